#include "inference.h"

#include <string.h>

#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"
#include "pipeline.h"  // DequantizeSoftmax
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// The export's measured minimum (reference kernels, 64-bit host) plus a margin. Measured in QEMU,
// the Cortex-M4's smaller structs need less than the host (TinyConv 796 bytes, DS-CNN 1,516) and
// CMSIS-NN's scratch buffers add 32 / 64 bytes: the host's figure alone fits both kernel sets.
// 1 KB more is spare; a 4 KB margin put DS-CNN over the 64 KB RAM budget.
constexpr int kArenaSize = kTensorArenaSize + 1024;
alignas(16) uint8_t g_arena[kArenaSize];
tflite::MicroInterpreter* g_interpreter = nullptr;
TfLiteTensor* g_input = nullptr;
TfLiteTensor* g_output = nullptr;

}  // namespace

const char* SetupInference() {
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return "model schema version mismatch";
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) return "op registration failed";
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) return "AllocateTensors failed: raise the arena margin";
  g_interpreter = &interpreter;
  g_input = interpreter.input(0);
  g_output = interpreter.output(0);
  if (g_input->type != kTfLiteInt8 || g_input->bytes != static_cast<size_t>(kFeatureElementCount) ||
      g_output->type != kTfLiteInt8 || g_output->bytes != static_cast<size_t>(kCategoryCount)) {
    return "model input/output do not match model_settings.h";
  }
  return nullptr;
}

bool RunInference(void*, const int8_t* features, float* probabilities) {
  memcpy(g_input->data.int8, features, kFeatureElementCount);
  if (g_interpreter->Invoke() != kTfLiteOk) return false;
  DequantizeSoftmax(g_output->data.int8, kCategoryCount, kOutputScale, kOutputZeroPoint, probabilities);
  return true;
}

const int8_t* LastInferenceOutputs() { return g_output->data.int8; }

size_t InferenceArenaSize() { return kArenaSize; }

size_t InferenceArenaUsedBytes() { return g_interpreter ? g_interpreter->arena_used_bytes() : 0; }
