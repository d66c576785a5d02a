// Host test of the firmware's streaming pipeline (kws_firmware/feature_provider.cpp,
// pipeline.cpp, recognize_commands.cc and the front end model_settings.h names: micro_frontend.c
// or mfcc_frontend.c) with no Arduino or TFLM.
//
//   pipeline_main FILE [stride_ms]
//   pipeline_main --softmax < lines of kCategoryCount int8 outputs
//
// FILE holds raw little-endian int16 samples of a long 16 kHz recording. They are pushed into a
// ring buffer in irregular chunks, as the PDM callback would, and after each chunk the pipeline
// is polled as loop() does. Each inference's int8 window is dumped, one line:
//   time_ms v_0 ... v_{kFeatureElementCount-1}
// and the model stand-in returns uniform probabilities (so the recognizer runs, never detects). Detections
// would print as "Heard <label> (<score>) @<time>ms"; timing stats go to stderr. --softmax
// prints DequantizeSoftmax (kOutputScale, kOutputZeroPoint) of each line instead.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model_settings.h"
#include "pipeline.h"

namespace {

constexpr int kRingSamples = 4096;  // as audio_provider's ring buffer, smaller

struct Ring {
  int16_t samples[kRingSamples];
  int64_t written = 0;  // samples captured since the start
};

// The audio callback's side: append a chunk.
void Push(Ring* ring, const int16_t* data, int n) {
  for (int i = 0; i < n; ++i) ring->samples[(ring->written + i) % kRingSamples] = data[i];
  ring->written += n;
}

bool ReadRing(void* context, int64_t first, int count, int16_t* out) {
  const Ring* ring = static_cast<const Ring*>(context);
  if (first < 0 || first + count > ring->written || first < ring->written - kRingSamples) return false;
  for (int i = 0; i < count; ++i) out[i] = ring->samples[(first + i) % kRingSamples];
  return true;
}

// The model stand-in: uniform probabilities.
bool UniformModel(void*, const int8_t*, float* probabilities) {
  for (int i = 0; i < kCategoryCount; ++i) probabilities[i] = 1.0f / kCategoryCount;
  return true;
}

// After each inference: dump its time and the int8 window it saw.
void DumpWindow(void*, int32_t time_ms, const int8_t* features, const float*) {
  std::printf("%ld", static_cast<long>(time_ms));
  for (int i = 0; i < kFeatureElementCount; ++i) std::printf(" %d", features[i]);
  std::printf("\n");
}

void OnDetection(void*, const Detection& d) {
  std::printf("Heard %s (%.2f) @%ldms\n", d.label, d.score, static_cast<long>(d.time_ms));
}

uint32_t NowUs() {
  using namespace std::chrono;
  return static_cast<uint32_t>(duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [stride_ms]\n", argv[0]);
    return 2;
  }
  if (std::string(argv[1]) == "--softmax") {
    int values[kCategoryCount];
    for (;;) {
      for (int i = 0; i < kCategoryCount; ++i)
        if (std::scanf("%d", &values[i]) != 1) return 0;
      int8_t q[kCategoryCount];
      float p[kCategoryCount];
      for (int i = 0; i < kCategoryCount; ++i) q[i] = static_cast<int8_t>(values[i]);
      DequantizeSoftmax(q, kCategoryCount, kOutputScale, kOutputZeroPoint, p);
      for (int i = 0; i < kCategoryCount; ++i) std::printf(i ? " %.9g" : "%.9g", p[i]);
      std::printf("\n");
    }
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  if (!in) {
    std::perror(argv[1]);
    return 2;
  }
  std::vector<int16_t> audio;
  unsigned char b[2];
  while (std::fread(b, 1, 2, in) == 2) audio.push_back(static_cast<int16_t>(static_cast<uint16_t>(b[0] | (b[1] << 8))));
  std::fclose(in);

  PipelineConfig config;
  if (argc > 2) config.stride_ms = std::atoi(argv[2]);
  PipelineHooks hooks;
  hooks.model = UniformModel;
  hooks.on_inference = DumpWindow;
  hooks.on_detection = OnDetection;
  hooks.now_us = NowUs;
  static Pipeline pipeline(hooks, config);  // static: ~10 KB of state, as a global on the board
  if (!pipeline.ok()) {
    std::fprintf(stderr, "invalid pipeline configuration\n");
    return 2;
  }

  static Ring ring;
  uint32_t lcg = 12345;
  size_t pos = 0;
  while (pos < audio.size()) {
    lcg = lcg * 1103515245u + 12345u;
    size_t n = 1 + (lcg >> 16) % 700;  // 1..700 samples, like PDM callbacks of varying size
    if (n > audio.size() - pos) n = audio.size() - pos;
    Push(&ring, audio.data() + pos, static_cast<int>(n));
    pos += n;
    // loop(): everything that has arrived; several frames and inferences when behind.
    if (pipeline.Poll(ring.written, ring.written - kRingSamples, ReadRing, &ring) < 0) return 1;
  }
  char line[160];
  std::fprintf(stderr, "front end: %s\n", kFrontEnd);
  pipeline.frontend_stats().Format(line, sizeof line, "front end");
  std::fprintf(stderr, "%s\n", line);
  pipeline.inference_stats().Format(line, sizeof line, "inference");
  std::fprintf(stderr, "%s\n", line);
  pipeline.recognizer_stats().Format(line, sizeof line, "recognizer");
  std::fprintf(stderr, "%s\n", line);
  std::fprintf(stderr, "%lld frames, %lld inferences, %lld dropped\n", static_cast<long long>(pipeline.features().frames()),
               static_cast<long long>(pipeline.inferences()), static_cast<long long>(pipeline.features().dropped_frames()));
  return 0;
}
