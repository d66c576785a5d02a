// The streaming pipeline of `python -m kws listen` (kws/deploy/listen.py), stage by stage, with no
// Arduino or TFLM dependency: the model and the clock are callbacks.
//
//   audio -> FeatureProvider (one frame per 20 ms of audio, window slid) -> every stride_ms, once
//   the window is full, the model on the 49 x 40 int8 window -> probabilities -> RecognizeCommands.
//
// Inference times are kws.deploy.listen.windows' times: the end of the window's last frame, first at
// 990 ms (frame 48), then every stride_ms. Every due window is run, even when Poll catches up on
// several frames at once, so results do not depend on how the audio arrives.
#ifndef KWS_PIPELINE_H_
#define KWS_PIPELINE_H_

#include <cmath>
#include <cstdint>

#include "feature_provider.h"
#include "recognize_commands.h"
#include "timing_stats.h"

// The model: kFeatureElementCount int8 inputs -> kCategoryCount probabilities. False on error.
typedef bool (*ModelFn)(void* context, const int8_t* features, float* probabilities);

// int8 logits -> softmax probabilities, as kws.deploy.listen: logit = (q - zero_point) * scale, then a
// max-subtracted softmax in double.
inline void DequantizeSoftmax(const int8_t* q, int n, float scale, int zero_point, float* probabilities) {
  double logits[kRecognizeMaxCategories];
  double top = -INFINITY, sum = 0.0;
  for (int i = 0; i < n; ++i) {
    logits[i] = static_cast<double>(static_cast<float>(q[i] - zero_point) * scale);
    if (logits[i] > top) top = logits[i];
  }
  for (int i = 0; i < n; ++i) sum += (logits[i] = std::exp(logits[i] - top));
  for (int i = 0; i < n; ++i) probabilities[i] = static_cast<float>(logits[i] / sum);
}

// The recognizer's settings come from model_settings.h: calibrated for the model by the export
// (on a validation stream, for a false-alarm budget), the same ones `python -m kws listen` uses.
struct PipelineConfig {
  int32_t stride_ms = kInferenceStrideMs;  // a multiple of kFeatureStrideMs
  int32_t average_window_ms = kAverageWindowMs;
  float detection_threshold = kDetectionThreshold;
  int32_t suppression_ms = kSuppressionMs;
  int minimum_count = kMinimumCount;
};

struct PipelineHooks {
  ModelFn model = nullptr;
  void* model_context = nullptr;
  // Optional: after each inference (window, its time, the probabilities).
  void (*on_inference)(void* context, int32_t time_ms, const int8_t* features, const float* probabilities) = nullptr;
  // Optional: each detection.
  void (*on_detection)(void* context, const Detection& detection) = nullptr;
  void* context = nullptr;
  // Optional: a microsecond clock (micros() on the board) for the timing stats.
  uint32_t (*now_us)() = nullptr;
};

static_assert(kCategoryCount <= kRecognizeMaxCategories, "raise KWS_RECOGNIZE_MAX_CATEGORIES");

constexpr int kTimingWindow = 50;  // inferences the timing stats cover

class Pipeline {
 public:
  Pipeline(const PipelineHooks& hooks, const PipelineConfig& config = PipelineConfig());

  // False if the configuration is invalid (stride not a multiple of the frame step, recognizer
  // arguments, no model).
  bool ok() const { return ok_; }

  // Computes every frame whose audio has arrived and runs every inference that falls due.
  // Returns the number of inferences run, or -1 if the model failed. An audio overrun (the
  // reader failing: the loop fell behind the ring buffer) skips to the oldest audio still held,
  // `oldest_available_sample`.
  int Poll(int64_t available_samples, int64_t oldest_available_sample, AudioReader reader, void* reader_context);

  const FeatureProvider& features() const { return features_; }
  const RecognizeCommands& recognizer() const { return recognizer_; }
  // Per stage: front end (one frame, incl. quantization), inference (model + softmax), recognizer.
  const TimingStats<kTimingWindow>& frontend_stats() const { return frontend_stats_; }
  const TimingStats<kTimingWindow>& inference_stats() const { return inference_stats_; }
  const TimingStats<kTimingWindow>& recognizer_stats() const { return recognizer_stats_; }
  int64_t inferences() const { return inferences_; }

 private:
  uint32_t Now() const { return hooks_.now_us ? hooks_.now_us() : 0; }

  PipelineHooks hooks_;
  int frames_per_inference_;
  bool ok_;
  FeatureProvider features_;
  RecognizeCommands recognizer_;
  float probabilities_[kCategoryCount];
  int64_t inferences_ = 0;
  TimingStats<kTimingWindow> frontend_stats_, inference_stats_, recognizer_stats_;
};

#endif  // KWS_PIPELINE_H_
