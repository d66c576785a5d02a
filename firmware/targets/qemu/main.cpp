// The sketch's setup() / loop() on QEMU mps2-an386: a host recording comes in through the
// sketch's own audio_provider.cpp (PDM played from the file, pdm.cpp), runs through the same
// Pipeline and inference.cpp, and the results go to host files through semihosting instead of
// Serial and the LEDs.
//
//   kws_sim stream RECORDING OUT_DIR
//     one inference every kInferenceStrideMs (model_settings.h), as the sketch
//     OUT_DIR/inferences.txt  one line per inference: "time_ms o0 .. o{n-1}" (raw int8 outputs)
//     OUT_DIR/detections.txt  "Heard yes (0.93) @1234ms", the text of `python -m kws listen`
//   kws_sim windows INPUT OUTPUT
//     INPUT: N x kFeatureElementCount int8 model inputs back to back; OUTPUT: N lines of the
//     kCategoryCount int8 outputs (the model alone, clip by clip)
//
// The command line comes from QEMU's -semihosting-config arg=... (no spaces inside arguments).
// Prints arena_used_bytes() and the stack / heap high-water marks at the end; exit status 0 on
// success.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio_provider.h"
#include "board.h"
#include "inference.h"
#include "model_settings.h"
#include "pipeline.h"
#include "recording.h"

// CMSIS-NN's TFLM (cortex_m_generic) logs through a callback; the reference tree to stderr.
#if __has_include("tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h")
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#define KWS_DEBUG_LOG_CALLBACK 1
#endif

namespace {

FILE* g_inferences = nullptr;
FILE* g_detections = nullptr;

int Fail(const char* what, const char* detail = "") {
  fprintf(stderr, "kws_sim: %s %s\n", what, detail);
  return 1;
}

FILE* OpenOut(const char* dir, const char* name) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return fopen(path, "w");
}

void WriteOutputs(FILE* out, const int8_t* outputs) {
  for (int i = 0; i < kCategoryCount; ++i) fprintf(out, i ? " %d" : "%d", outputs[i]);
  fputc('\n', out);
}

void OnInference(void*, int32_t time_ms, const int8_t*, const float*) {
  fprintf(g_inferences, "%ld ", static_cast<long>(time_ms));
  WriteOutputs(g_inferences, LastInferenceOutputs());
}

// command_responder.cpp's line (Serial on the board).
void OnDetection(void*, const Detection& d) {
  char line[64];
  snprintf(line, sizeof line, "Heard %s (%.2f) @%ldms", d.label, d.score, static_cast<long>(d.time_ms));
  puts(line);
  fprintf(g_detections, "%s\n", line);
}

int Stream(const char* recording, const char* out_dir) {
  if (const char* error = OpenRecording(recording)) return Fail(error, recording);
  g_inferences = OpenOut(out_dir, "inferences.txt");
  g_detections = OpenOut(out_dir, "detections.txt");
  if (!g_inferences || !g_detections) return Fail("cannot write into", out_dir);

  // setup(), as kws_firmware.ino.
  PipelineHooks hooks;
  hooks.model = RunInference;
  hooks.on_inference = OnInference;
  hooks.on_detection = OnDetection;
  PipelineConfig config;  // stride and recognizer from model_settings.h, as the .ino's
  static Pipeline pipeline(hooks, config);
  if (!pipeline.ok()) return Fail("invalid pipeline configuration");
  if (!SetupAudio()) return Fail("PDM.begin failed");

  // loop(): an interrupt's worth of audio, then the pipeline on whatever has arrived.
  while (DeliverAudio() > 0) {
    if (pipeline.Poll(LatestAudioSampleCount(), OldestAudioSample(), ReadAudio, nullptr) < 0) return Fail("inference failed");
  }
  printf("%lld samples, %lld frames, %lld inferences, %lld dropped frames\n",
         static_cast<long long>(LatestAudioSampleCount()), static_cast<long long>(pipeline.features().frames()),
         static_cast<long long>(pipeline.inferences()), static_cast<long long>(pipeline.features().dropped_frames()));
  fclose(g_inferences);
  fclose(g_detections);
  return 0;
}

int Windows(const char* input, const char* output) {
  FILE* in = fopen(input, "rb");
  FILE* out = fopen(output, "w");
  if (!in || !out) return Fail("cannot open", !in ? input : output);
  static int8_t window[kFeatureElementCount];
  float probabilities[kCategoryCount];
  long n = 0;
  while (fread(window, 1, sizeof window, in) == sizeof window) {
    if (!RunInference(nullptr, window, probabilities)) return Fail("inference failed");
    WriteOutputs(out, LastInferenceOutputs());
    ++n;
  }
  printf("%ld windows\n", n);
  fclose(in);
  fclose(out);
  return 0;
}

}  // namespace

int main() {
  static char line[1024];
  char* argv[8] = {};
  int argc = 0;
  if (BoardCommandLine(line, sizeof line) < 0) return Fail("no semihosting command line");
  for (char* arg = strtok(line, " "); arg && argc < 8; arg = strtok(nullptr, " ")) argv[argc++] = arg;

#ifdef KWS_DEBUG_LOG_CALLBACK
  RegisterDebugLogCallback([](const char* s) { fputs(s, stderr); });
#endif
  printf("front end: %s\n", kFrontEnd);
  if (const char* error = SetupInference()) return Fail(error);

  int status;
  if (argc == 4 && strcmp(argv[1], "stream") == 0) {
    status = Stream(argv[2], argv[3]);
  } else if (argc == 4 && strcmp(argv[1], "windows") == 0) {
    status = Windows(argv[2], argv[3]);
  } else {
    return Fail("usage: kws_sim stream RECORDING OUT_DIR | kws_sim windows INPUT OUTPUT");
  }
  printf("arena_used_bytes: %u of %u\n", static_cast<unsigned>(InferenceArenaUsedBytes()),
         static_cast<unsigned>(InferenceArenaSize()));
  printf("stack used: %u of %u bytes\n", static_cast<unsigned>(BoardStackUsedBytes()), static_cast<unsigned>(BoardStackSize()));
  printf("heap used: %u bytes (semihosting stdio only)\n", static_cast<unsigned>(BoardHeapUsedBytes()));
  return status;
}
