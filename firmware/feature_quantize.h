// One front-end output value -> the int8 model input, from model_settings.h alone:
//   feature = value * kFeatureScale                         (as in training, kws.audio.features)
//   int8    = clamp(round(feature / kInputScale) + kInputZeroPoint, -128, 127)
// with TFLite's rounding, half away from zero, computed exactly as kws/export.py's `quantize`
// does it in numpy: float32 arithmetic throughout, trunc(q + copysign(0.5, feature)). (Not
// roundf: q + 0.5f is itself rounded to float32, so e.g. q = 0.49999997f gives 1 here, as in
// Python, where roundf would give 0.) Needs FLT_EVAL_METHOD 0 (float math in float: any
// Cortex-M4F/M7 or x86-64 build; not x87).
//
// Two front ends, one rounding (QuantizeScaledFeature): the micro front end's uint16 values
// (kFeatureScale 10/256) and the MFCC front end's float coefficients (kFeatureScale 1, so the
// feature is the value itself). Include model_settings.h before this header.
#ifndef KWS_FEATURE_QUANTIZE_H_
#define KWS_FEATURE_QUANTIZE_H_

#include <cmath>
#include <cstdint>

// A feature as the model was trained on (already multiplied by kFeatureScale) -> int8 input.
inline int8_t QuantizeScaledFeature(float feature) {
  const float scaled = feature / kInputScale;
  const float rounded = std::trunc(scaled + std::copysign(0.5f, feature));
  const float q = rounded + static_cast<float>(kInputZeroPoint);
  if (q <= -128.0f) return -128;
  if (q >= 127.0f) return 127;
  return static_cast<int8_t>(q);
}

// A micro front-end value (micro_frontend.c).
inline int8_t QuantizeFeature(uint16_t value) { return QuantizeScaledFeature(static_cast<float>(value) * kFeatureScale); }

// An MFCC front-end coefficient (mfcc_frontend.c).
inline int8_t QuantizeFeature(float value) { return QuantizeScaledFeature(value * kFeatureScale); }

// A whole frame: n front-end values -> n model inputs.
inline void QuantizeFeatures(const uint16_t* values, int n, int8_t* out) {
  for (int i = 0; i < n; ++i) out[i] = QuantizeFeature(values[i]);
}
inline void QuantizeFeatures(const float* values, int n, int8_t* out) {
  for (int i = 0; i < n; ++i) out[i] = QuantizeFeature(values[i]);
}

#endif  // KWS_FEATURE_QUANTIZE_H_
