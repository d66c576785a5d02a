// See recognize_commands.h. Mirrors kws/streams/recognize.py RecognizeCommands.process line by line.
#include "recognize_commands.h"

RecognizeCommands::RecognizeCommands(const char* const* labels, int num_categories, int silence_index,
                                     int unknown_index, int32_t average_window_ms, float detection_threshold,
                                     int32_t suppression_ms, int minimum_count)
    : labels_(labels),
      num_categories_(num_categories),
      silence_index_(silence_index),
      unknown_index_(unknown_index),
      average_window_ms_(average_window_ms),
      detection_threshold_(detection_threshold),
      suppression_ms_(suppression_ms),
      minimum_count_(minimum_count) {
  ok_ = average_window_ms > 0 && suppression_ms >= 0 && minimum_count >= 1 && minimum_count <= kRecognizeMaxResults &&
        num_categories >= 1 && num_categories <= kRecognizeMaxCategories;
  Reset();
}

void RecognizeCommands::Reset() {
  head_ = 0;
  count_ = 0;
  overflowed_ = false;
  previous_index_ = -1;
  has_previous_time_ = false;
  previous_time_ms_ = 0;
}

bool RecognizeCommands::Process(const float* scores, int32_t time_ms, Detection* out) {
  if (!ok_) return false;
  if (count_ > 0 && time_ms < times_[(head_ + count_ - 1) % kRecognizeMaxResults]) return false;  // time went backwards

  // Append (dropping the oldest when full), then drop results older than the window.
  if (count_ == kRecognizeMaxResults) {
    head_ = (head_ + 1) % kRecognizeMaxResults;
    --count_;
    overflowed_ = true;
  }
  const int slot = (head_ + count_) % kRecognizeMaxResults;
  for (int c = 0; c < num_categories_; ++c) scores_[slot][c] = scores[c];
  times_[slot] = time_ms;
  ++count_;
  // 64-bit difference: no overflow for any int32 times.
  while (static_cast<int64_t>(time_ms) - times_[head_] > average_window_ms_) {
    head_ = (head_ + 1) % kRecognizeMaxResults;
    --count_;
  }
  if (count_ < minimum_count_) return false;

  // The average in double, oldest to newest, then divided by the count: what numpy's mean over
  // axis 0 of the float64 scores computes, so comparisons and scores agree with Python exactly.
  int top = 0;
  double top_score = 0.0;
  for (int c = 0; c < num_categories_; ++c) {
    double sum = 0.0;
    for (int i = 0; i < count_; ++i) sum += static_cast<double>(scores_[(head_ + i) % kRecognizeMaxResults][c]);
    const double average = sum / count_;
    if (c == 0 || average > top_score) {  // strict '>': the first of equal averages (np.argmax)
      top = c;
      top_score = average;
    }
  }
  if (top_score < static_cast<double>(detection_threshold_)) return false;
  if (top == previous_index_ && has_previous_time_ &&
      static_cast<int64_t>(time_ms) - previous_time_ms_ <= suppression_ms_) {
    return false;
  }
  previous_index_ = top;
  previous_time_ms_ = time_ms;
  has_previous_time_ = true;
  if (top == silence_index_ || top == unknown_index_) return false;
  out->index = top;
  out->label = labels_[top];
  out->score = static_cast<float>(top_score);
  out->time_ms = time_ms;
  return true;
}
