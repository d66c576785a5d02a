#include "pipeline.h"

Pipeline::Pipeline(const PipelineHooks& hooks, const PipelineConfig& config)
    : hooks_(hooks),
      frames_per_inference_(config.stride_ms / kFeatureStrideMs),
      ok_(false),
      recognizer_(kCategoryLabels, kCategoryCount, kSilenceIndex, kUnknownIndex, config.average_window_ms,
                  config.detection_threshold, config.suppression_ms, config.minimum_count) {
  ok_ = hooks.model != nullptr && config.stride_ms > 0 && config.stride_ms % kFeatureStrideMs == 0 && recognizer_.ok();
}

int Pipeline::Poll(int64_t available_samples, int64_t oldest_available_sample, AudioReader reader, void* reader_context) {
  if (!ok_) return -1;
  int ran = 0;
  for (;;) {
    const uint32_t t0 = Now();
    const int got = features_.NextFrame(available_samples, reader, reader_context);
    if (got == 0) break;
    if (got < 0) {  // overrun: resume from the oldest audio still held
      features_.SkipTo(oldest_available_sample);
      continue;
    }
    frontend_stats_.Add(Now() - t0);

    // Frame index e = frames - 1; kws.deploy.listen.windows runs e = 48, 48 + k, 48 + 2k, ...
    const int64_t frames = features_.frames();
    if (frames < kFeatureCount || (frames - kFeatureCount) % frames_per_inference_ != 0) continue;

    const int32_t time_ms = features_.last_frame_end_ms();
    const uint32_t t1 = Now();
    if (!hooks_.model(hooks_.model_context, features_.window(), probabilities_)) return -1;
    const uint32_t t2 = Now();
    inference_stats_.Add(t2 - t1);
    if (hooks_.on_inference) hooks_.on_inference(hooks_.context, time_ms, features_.window(), probabilities_);
    Detection detection;
    const bool heard = recognizer_.Process(probabilities_, time_ms, &detection);
    recognizer_stats_.Add(Now() - t2);
    if (heard && hooks_.on_detection) hooks_.on_detection(hooks_.context, detection);
    ++inferences_;
    ++ran;
  }
  return ran;
}
