#include "inference.h"

#include <Arduino.h>
#include <TensorFlowLite.h>
#include <string.h>

#include "model_data.h"
#include "model_ops.h"
#include "model_settings.h"
#include "pipeline.h"  // DequantizeSoftmax
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

// The export's measured minimum (reference kernels) plus a margin for optimized kernels' scratch.
constexpr int kArenaSize = kTensorArenaSize + 4096;
alignas(16) uint8_t g_arena[kArenaSize];
tflite::MicroInterpreter* g_interpreter = nullptr;
TfLiteTensor* g_input = nullptr;

}  // namespace

bool SetupInference() {
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Serial.println("model schema version mismatch");
    return false;
  }
  static ModelOpResolver resolver;
  if (RegisterModelOps(resolver) != kTfLiteOk) {
    Serial.println("op registration failed");
    return false;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    Serial.println("AllocateTensors failed: raise the arena margin");
    return false;
  }
  g_interpreter = &interpreter;
  g_input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);
  if (g_input->type != kTfLiteInt8 || g_input->bytes != static_cast<size_t>(kFeatureElementCount) ||
      output->type != kTfLiteInt8 || output->bytes != static_cast<size_t>(kCategoryCount)) {
    Serial.println("model input/output do not match model_settings.h");
    return false;
  }
  Serial.print("arena used: ");
  Serial.println(static_cast<int>(interpreter.arena_used_bytes()));
  return true;
}

bool RunInference(void*, const int8_t* features, float* probabilities) {
  memcpy(g_input->data.int8, features, kFeatureElementCount);
  if (g_interpreter->Invoke() != kTfLiteOk) return false;
  DequantizeSoftmax(g_interpreter->output(0)->data.int8, kCategoryCount, kOutputScale, kOutputZeroPoint, probabilities);
  return true;
}
