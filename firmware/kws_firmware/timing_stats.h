// Per-stage timing: min / max / average over the last N samples (microseconds in, printed as
// ms). Plain C++ (snprintf only, integers only: no float printf needed on the board).
#ifndef KWS_TIMING_STATS_H_
#define KWS_TIMING_STATS_H_

#include <cstdint>
#include <cstdio>

template <int N>
class TimingStats {
 public:
  void Add(uint32_t us) {
    values_[next_] = us;
    next_ = (next_ + 1) % N;
    if (count_ < N) ++count_;
  }
  int count() const { return count_; }
  uint32_t min_us() const { uint32_t m = UINT32_MAX; for (int i = 0; i < count_; ++i) if (values_[i] < m) m = values_[i]; return count_ ? m : 0; }
  uint32_t max_us() const { uint32_t m = 0; for (int i = 0; i < count_; ++i) if (values_[i] > m) m = values_[i]; return m; }
  uint32_t avg_us() const { uint64_t s = 0; for (int i = 0; i < count_; ++i) s += values_[i]; return count_ ? static_cast<uint32_t>(s / count_) : 0; }

  // "<name>: min 1.234 max 2.345 avg 1.500 ms (last n)"
  int Format(char* buf, int size, const char* name) const {
    const uint32_t lo = min_us(), hi = max_us(), avg = avg_us();
    return std::snprintf(buf, size, "%s: min %lu.%03lu max %lu.%03lu avg %lu.%03lu ms (last %d)", name,
                         (unsigned long)(lo / 1000), (unsigned long)(lo % 1000), (unsigned long)(hi / 1000),
                         (unsigned long)(hi % 1000), (unsigned long)(avg / 1000), (unsigned long)(avg % 1000), count_);
  }

 private:
  uint32_t values_[N] = {};
  int next_ = 0;
  int count_ = 0;
};

#endif  // KWS_TIMING_STATS_H_
