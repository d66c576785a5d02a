// Inference: g_model in a TFLM MicroInterpreter with the export's op resolver (model_ops.h).
// Plain C++ and TFLM, no Arduino: the sketch and the QEMU firmware (firmware/targets/qemu) run
// this same file; the caller prints any error.
#ifndef KWS_INFERENCE_H_
#define KWS_INFERENCE_H_

#include <stddef.h>
#include <stdint.h>

// Loads the model, registers its ops, allocates the arena, checks the input / output against
// model_settings.h. Returns nullptr when ready, otherwise what failed.
const char* SetupInference();

// kFeatureElementCount int8 features -> kCategoryCount probabilities (int8 output dequantized
// with kOutputScale / kOutputZeroPoint, then softmax). Matches the pipeline's ModelFn.
bool RunInference(void* context, const int8_t* features, float* probabilities);

// The raw int8 outputs (kCategoryCount) of the last RunInference.
const int8_t* LastInferenceOutputs();

// The tensor arena: bytes reserved (kTensorArenaSize + a margin) and bytes the interpreter uses.
size_t InferenceArenaSize();
size_t InferenceArenaUsedBytes();

#endif  // KWS_INFERENCE_H_
