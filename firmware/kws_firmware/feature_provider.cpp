#include "feature_provider.h"

#include <cstring>

#include "feature_quantize.h"

void FeatureProvider::Reset() {
  FrontendInit(&state_);
  const int8_t zero = QuantizeScaledFeature(0.0f);
  for (int i = 0; i < kFeatureElementCount; ++i) window_[i] = zero;
  frames_ = 0;
  dropped_ = 0;
}

int FeatureProvider::NextFrame(int64_t available_samples, AudioReader reader, void* context) {
  const int64_t first = FrameStartSample(frames_);
  if (first + kFeatureDurationSamples > available_samples) return 0;
  if (!reader(context, first, kFeatureDurationSamples, samples_)) return -1;
  FrontendProcessWindow(&state_, samples_, values_);
  // Slide by one frame, the new one last.
  std::memmove(window_, window_ + kFeatureSize, (kFeatureCount - 1) * kFeatureSize);
  QuantizeFeatures(values_, kFeatureSize, window_ + (kFeatureCount - 1) * kFeatureSize);
  ++frames_;
  return 1;
}

void FeatureProvider::SkipTo(int64_t first_sample) {
  const int64_t frame = (first_sample + kFeatureStrideSamples - 1) / kFeatureStrideSamples;
  if (frame > frames_) {
    dropped_ += frame - frames_;
    frames_ = frame;
  }
}

int32_t FeatureProvider::last_frame_end_ms() const {
  const int64_t end = FrameStartSample(frames_ - 1) + kFeatureDurationSamples;
  return static_cast<int32_t>(end * 1000 / kAudioSampleFrequency);
}
