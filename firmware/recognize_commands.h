// Command recognizer: a C++ port of kws/streams/recognize.py's RecognizeCommands, step for step.
//
// One inference every stride gives class probabilities in [0, 1] (the softmax of the model's
// dequantized outputs). Scores of the inferences at most average_window_ms old are averaged; the
// top class (the first of equal averages) is a command when its average is >= the threshold and it
// is not the previous command repeated within suppression_ms. Ignored categories (silence,
// unknown: kSilenceIndex / kUnknownIndex of model_settings.h, -1 for none) become the previous
// command and restart the suppression clock, but are never reported. At start the previous
// command is "none".
//
// Plain C++17, no heap, no TFLM: the last kRecognizeMaxResults inferences live in a ring buffer.
// tests/firmware/test_host.py checks it against the Python class on the same score sequences.
#ifndef KWS_RECOGNIZE_COMMANDS_H_
#define KWS_RECOGNIZE_COMMANDS_H_

#include <cstdint>

#ifndef KWS_RECOGNIZE_MAX_RESULTS
// 1000 ms of averaging at a 20 ms stride holds 51 inferences (both ends count).
#define KWS_RECOGNIZE_MAX_RESULTS 64
#endif
#ifndef KWS_RECOGNIZE_MAX_CATEGORIES
#define KWS_RECOGNIZE_MAX_CATEGORIES 16
#endif

constexpr int kRecognizeMaxResults = KWS_RECOGNIZE_MAX_RESULTS;
constexpr int kRecognizeMaxCategories = KWS_RECOGNIZE_MAX_CATEGORIES;

struct Detection {
  int index;          // category index
  const char* label;  // labels[index]
  float score;        // the category's average over the window, in [0, 1]
  int32_t time_ms;
};

class RecognizeCommands {
 public:
  // labels: num_categories names (kCategoryLabels), kept by pointer. silence_index /
  // unknown_index: ignored categories, -1 for none. Invalid arguments (see Python's ValueError:
  // average_window_ms <= 0, suppression_ms < 0, minimum_count < 1; or more categories than
  // kRecognizeMaxCategories, minimum_count > kRecognizeMaxResults) leave ok() false and Process()
  // always false.
  RecognizeCommands(const char* const* labels, int num_categories, int silence_index, int unknown_index,
                    int32_t average_window_ms = 1000, float detection_threshold = 0.8f,
                    int32_t suppression_ms = 1500, int minimum_count = 3);

  bool ok() const { return ok_; }
  void Reset();

  // Adds one inference's num_categories scores at time_ms; true, with *out filled, when it
  // completes a detection. A time earlier than the previous one is rejected (false, nothing
  // added), where Python raises. When more than kRecognizeMaxResults inferences fall in the
  // window the oldest are dropped (Python keeps them all): size the buffer for window / stride + 1.
  bool Process(const float* scores, int32_t time_ms, Detection* out);

  // Inferences in the window; true if an inference was ever dropped for lack of room.
  int size() const { return count_; }
  bool overflowed() const { return overflowed_; }

 private:
  const char* const* labels_;
  int num_categories_;
  int silence_index_;
  int unknown_index_;
  int32_t average_window_ms_;
  float detection_threshold_;
  int32_t suppression_ms_;
  int minimum_count_;
  bool ok_;

  float scores_[kRecognizeMaxResults][kRecognizeMaxCategories];
  int32_t times_[kRecognizeMaxResults];
  int head_;   // oldest entry
  int count_;  // entries held
  bool overflowed_;

  int previous_index_;  // -1: none
  bool has_previous_time_;
  int32_t previous_time_ms_;
};

#endif  // KWS_RECOGNIZE_COMMANDS_H_
