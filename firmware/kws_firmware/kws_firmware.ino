// Keyword spotting on the Arduino Nano 33 BLE Sense: the pipeline of `python -m kws listen`.
//   PDM mic -> ring buffer (audio_provider) -> the model's front end (micro or MFCC, as
//   model_settings.h says) + int8 quantization every 20 ms (feature_provider) -> every
//   kInferenceStrideMs the 49 x 40 window through TFLM (inference)
//   -> softmax -> RecognizeCommands -> Serial + LEDs (command_responder).
// Needs the generated files copied in: see firmware/README.md, "Arduino sketch".
#include <TensorFlowLite.h>

#include "audio_provider.h"
#include "command_responder.h"
#include "inference.h"
#include "model_settings.h"
#include "pipeline.h"

constexpr uint32_t kStatsPeriodMs = 10000;       // timing report period

Pipeline* g_pipeline = nullptr;
uint32_t g_next_stats_ms = 0;

uint32_t NowUs() { return micros(); }

void Halt(const char* why) {
  Serial.println(why);
  while (true) delay(1000);
}

void PrintStats() {
  char line[128];
  g_pipeline->frontend_stats().Format(line, sizeof line, "front end ");
  Serial.println(line);
  g_pipeline->inference_stats().Format(line, sizeof line, "inference ");
  Serial.println(line);
  g_pipeline->recognizer_stats().Format(line, sizeof line, "recognizer");
  Serial.println(line);
  if (g_pipeline->features().dropped_frames()) {
    Serial.print("dropped frames: ");
    Serial.println(static_cast<long>(g_pipeline->features().dropped_frames()));
  }
}

void setup() {
  Serial.begin(115200);
  for (uint32_t t = millis(); !Serial && millis() - t < 3000;) {}
  SetupResponder();
  if (const char* error = SetupInference()) Halt(error);
  Serial.print("arena used: ");
  Serial.print(static_cast<int>(InferenceArenaUsedBytes()));
  Serial.print(" of ");
  Serial.println(static_cast<int>(InferenceArenaSize()));

  PipelineHooks hooks;
  hooks.model = RunInference;
  hooks.on_detection = RespondToCommand;
  hooks.now_us = NowUs;
  PipelineConfig config;  // stride and recognizer from model_settings.h, as listen's defaults
  static Pipeline pipeline(hooks, config);
  if (!pipeline.ok()) Halt("invalid pipeline configuration");
  g_pipeline = &pipeline;
  Serial.print("front end: ");
  Serial.println(kFrontEnd);

  if (!SetupAudio()) Halt("PDM.begin failed");
  g_next_stats_ms = millis() + kStatsPeriodMs;
}

void loop() {
  if (g_pipeline->Poll(LatestAudioSampleCount(), OldestAudioSample(), ReadAudio, nullptr) < 0) Serial.println("inference failed");
  const uint32_t now = millis();
  UpdateResponder(now);
  if (static_cast<int32_t>(now - g_next_stats_ms) >= 0) {
    PrintStats();
    g_next_stats_ms = now + kStatsPeriodMs;
  }
}
