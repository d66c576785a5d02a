// Feature provider: the sliding 49 x 40 int8 feature window the model reads.
//
// Plain C++17 (no Arduino, no TFLM): audio comes through an AudioReader callback, by absolute
// sample index since the start of capture. Each new 20 ms step of audio gives one frame: the C
// micro front end (micro_frontend.c, noise estimate / PCAN state carried across frames, never
// reset between windows -- exactly as kws.listen.stream_features), each value quantized with
// QuantizeFeature (feature_quantize.h) from model_settings.h, the window slid by one frame.
//
// Frame k covers samples [k * kFeatureStrideSamples, k * kFeatureStrideSamples +
// kFeatureDurationSamples); its end time is (k * stride + duration) * 1000 / rate ms, as in
// kws.listen.windows.
#ifndef KWS_FEATURE_PROVIDER_H_
#define KWS_FEATURE_PROVIDER_H_

#include <cstdint>

#include "model_settings.h"  // first: feature_quantize.h reads its constants
#include "micro_frontend.h"

static_assert(MF_NUM_CHANNELS == kFeatureSize, "micro_frontend_tables.h and model_settings.h disagree on channels");
static_assert(MF_WINDOW_SAMPLES == kFeatureDurationSamples, "micro_frontend_tables.h and model_settings.h disagree on the window");
static_assert(MF_STRIDE_SAMPLES == kFeatureStrideSamples, "micro_frontend_tables.h and model_settings.h disagree on the stride");
static_assert(MF_SAMPLE_RATE == kAudioSampleFrequency, "micro_frontend_tables.h and model_settings.h disagree on the sample rate");

// Copies `count` samples starting at absolute sample index `first_sample` into `out`. Returns
// false when they are not (or no longer) in the audio buffer.
typedef bool (*AudioReader)(void* context, int64_t first_sample, int count, int16_t* out);

class FeatureProvider {
 public:
  FeatureProvider() { Reset(); }

  // Fresh front-end state, window filled with the int8 of a zero feature, frame counter 0.
  void Reset();

  // Computes the next frame if its audio has arrived (`available_samples`: samples captured
  // since the start). Returns 1 when a frame was added (window slid), 0 when its audio is not
  // there yet, -1 when the reader failed (audio overwritten: the caller fell behind; see SkipTo).
  int NextFrame(int64_t available_samples, AudioReader reader, void* context);

  // After an overrun: move on so the next frame starts at or after `first_sample`. The front-end
  // state is kept; the window keeps its old frames (a gap), counted in dropped_frames().
  void SkipTo(int64_t first_sample);

  const int8_t* window() const { return window_; }  // kFeatureCount x kFeatureSize, oldest first
  int64_t frames() const { return frames_; }        // frames computed (and skipped) so far
  int64_t dropped_frames() const { return dropped_; }
  // End of the last computed frame, in ms since the start (kws.listen.windows' time).
  int32_t last_frame_end_ms() const;
  static int64_t FrameStartSample(int64_t frame) { return frame * kFeatureStrideSamples; }

 private:
  MicroFrontendState state_;
  int16_t samples_[kFeatureDurationSamples];
  uint16_t values_[kFeatureSize];
  int8_t window_[kFeatureElementCount];
  int64_t frames_ = 0;
  int64_t dropped_ = 0;
};

#endif  // KWS_FEATURE_PROVIDER_H_
