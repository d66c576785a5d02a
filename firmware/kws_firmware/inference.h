// Inference (Arduino + TFLM only): g_model in a MicroInterpreter with the export's op resolver.
#ifndef KWS_INFERENCE_H_
#define KWS_INFERENCE_H_

#include <stdint.h>

// Loads the model, registers its ops, allocates the arena, checks the input shape / type.
bool SetupInference();

// kFeatureElementCount int8 features -> kCategoryCount probabilities (int8 output dequantized
// with kOutputScale / kOutputZeroPoint, then softmax). Matches the pipeline's ModelFn.
bool RunInference(void* context, const int8_t* features, float* probabilities);

#endif  // KWS_INFERENCE_H_
