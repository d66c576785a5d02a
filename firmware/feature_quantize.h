// One micro front-end output value (uint16) -> the int8 model input, from model_settings.h alone:
//   feature = value * kFeatureScale                         (as in training, kws.features)
//   int8    = clamp(round(feature / kInputScale) + kInputZeroPoint, -128, 127)
// with TFLite's rounding, half away from zero, computed exactly as kws/export.py's `quantize`
// does it in numpy: float32 arithmetic throughout, trunc(q + copysign(0.5, feature)). (Not
// roundf: q + 0.5f is itself rounded to float32, so e.g. q = 0.49999997f gives 1 here, as in
// Python, where roundf would give 0.) Needs FLT_EVAL_METHOD 0 (float math in float: any
// Cortex-M4F/M7 or x86-64 build; not x87).
// Include model_settings.h before this header.
#ifndef KWS_FEATURE_QUANTIZE_H_
#define KWS_FEATURE_QUANTIZE_H_

#include <cmath>
#include <cstdint>

inline int8_t QuantizeFeature(uint16_t value) {
  const float feature = static_cast<float>(value) * kFeatureScale;
  const float scaled = feature / kInputScale;
  const float rounded = std::trunc(scaled + std::copysign(0.5f, feature));
  const float q = rounded + static_cast<float>(kInputZeroPoint);
  if (q <= -128.0f) return -128;
  if (q >= 127.0f) return 127;
  return static_cast<int8_t>(q);
}

// A whole window: n front-end values -> n model inputs.
inline void QuantizeFeatures(const uint16_t* values, int n, int8_t* out) {
  for (int i = 0; i < n; ++i) out[i] = QuantizeFeature(values[i]);
}

#endif  // KWS_FEATURE_QUANTIZE_H_
