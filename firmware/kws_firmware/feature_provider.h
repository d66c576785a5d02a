// Feature provider: the sliding 49 x 40 int8 feature window the model reads.
//
// Plain C++17 (no Arduino, no TFLM): audio comes through an AudioReader callback, by absolute
// sample index since the start of capture. Each new 20 ms step of audio gives one frame: the
// front end the model was trained on, each value quantized with QuantizeFeature
// (feature_quantize.h) from model_settings.h, the window slid by one frame. model_settings.h
// picks the front end at compile time, exactly as kws.deploy.listen.stream_features computes it:
//   KWS_FRONTEND_MICRO: the C micro front end (micro_frontend.c, uint16 values; noise estimate /
//     PCAN state carried across frames, never reset between windows);
//   KWS_FRONTEND_MFCC: the C MFCC front end (mfcc_frontend.c, float coefficients; no state
//     carried across frames).
// Only that front end's files need to be in the sketch (firmware/README.md).
//
// Frame k covers samples [k * kFeatureStrideSamples, k * kFeatureStrideSamples +
// kFeatureDurationSamples); its end time is (k * stride + duration) * 1000 / rate ms, as in
// kws.deploy.listen.windows.
#ifndef KWS_FEATURE_PROVIDER_H_
#define KWS_FEATURE_PROVIDER_H_

#include <cstdint>

#include "model_settings.h"  // first: feature_quantize.h reads its constants, the front end is its choice

#if defined(KWS_FRONTEND_MICRO) && defined(KWS_FRONTEND_MFCC)
#error "model_settings.h defines both KWS_FRONTEND_MICRO and KWS_FRONTEND_MFCC"
#elif defined(KWS_FRONTEND_MFCC)
#include "mfcc_frontend.h"
static_assert(MFCC_NUM_COEFFS == kFeatureSize, "mfcc_frontend_tables.h and model_settings.h disagree on coefficients");
static_assert(MFCC_WINDOW_SAMPLES == kFeatureDurationSamples, "mfcc_frontend_tables.h and model_settings.h disagree on the window");
static_assert(MFCC_STRIDE_SAMPLES == kFeatureStrideSamples, "mfcc_frontend_tables.h and model_settings.h disagree on the stride");
static_assert(MFCC_SAMPLE_RATE == kAudioSampleFrequency, "mfcc_frontend_tables.h and model_settings.h disagree on the sample rate");
typedef MfccFrontendState FrontendState;
typedef float FrontendValue;
inline void FrontendInit(FrontendState*) {}  // stateless: each frame from its own samples
inline void FrontendProcessWindow(FrontendState* state, const int16_t* samples, FrontendValue* out) {
  MfccFrontendProcessWindow(state, samples, out);
}
#elif defined(KWS_FRONTEND_MICRO)
#include "micro_frontend.h"
static_assert(MF_NUM_CHANNELS == kFeatureSize, "micro_frontend_tables.h and model_settings.h disagree on channels");
static_assert(MF_WINDOW_SAMPLES == kFeatureDurationSamples, "micro_frontend_tables.h and model_settings.h disagree on the window");
static_assert(MF_STRIDE_SAMPLES == kFeatureStrideSamples, "micro_frontend_tables.h and model_settings.h disagree on the stride");
static_assert(MF_SAMPLE_RATE == kAudioSampleFrequency, "micro_frontend_tables.h and model_settings.h disagree on the sample rate");
typedef MicroFrontendState FrontendState;
typedef uint16_t FrontendValue;
inline void FrontendInit(FrontendState* state) { MicroFrontendInit(state); }
inline void FrontendProcessWindow(FrontendState* state, const int16_t* samples, FrontendValue* out) {
  MicroFrontendProcessWindow(state, samples, out);
}
#else
#error "model_settings.h defines neither KWS_FRONTEND_MICRO nor KWS_FRONTEND_MFCC: use one written by kws.export.write_model_settings (python -m kws export)"
#endif

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
  // End of the last computed frame, in ms since the start (kws.deploy.listen.windows' time).
  int32_t last_frame_end_ms() const;
  static int64_t FrameStartSample(int64_t frame) { return frame * kFeatureStrideSamples; }

 private:
  FrontendState state_;  // the front end's state (micro) or scratch (MFCC)
  int16_t samples_[kFeatureDurationSamples];
  FrontendValue values_[kFeatureSize];
  int8_t window_[kFeatureElementCount];
  int64_t frames_ = 0;
  int64_t dropped_ = 0;
};

#endif  // KWS_FEATURE_PROVIDER_H_
