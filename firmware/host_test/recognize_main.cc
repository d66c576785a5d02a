// Host test driver for RecognizeCommands (tests/firmware/test_host.py builds and runs it).
//
//   recognize_main [average_window_ms threshold suppression_ms minimum_count [no-ignore]]
//
// stdin: one inference per line, "time_ms s_0 ... s_{kCategoryCount-1}" (scores as floats).
// stdout: one line per detection, "Heard <label> (<score, 2 decimals>) @<time>ms", as
// kws.streams.recognize.Detection prints. Labels and the ignored silence/unknown indices come from
// model_settings.h (on the include path); "no-ignore" ignores nothing. Exit status 1 on bad
// arguments or input, 3 if the ring buffer overflowed (the Python class would keep all results).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "model_settings.h"
#include "recognize_commands.h"

int main(int argc, char** argv) {
  int32_t window = 1000, suppression = 1500;
  float threshold = 0.8f;
  int minimum_count = 3;
  bool ignore = true;
  if (argc >= 5) {
    window = std::atoi(argv[1]);
    threshold = std::strtof(argv[2], nullptr);
    suppression = std::atoi(argv[3]);
    minimum_count = std::atoi(argv[4]);
    if (argc >= 6 && std::strcmp(argv[5], "no-ignore") == 0) ignore = false;
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [average_window_ms threshold suppression_ms minimum_count [no-ignore]]\n", argv[0]);
    return 1;
  }
  static RecognizeCommands recognizer(kCategoryLabels, kCategoryCount, ignore ? kSilenceIndex : -1,
                                      ignore ? kUnknownIndex : -1, window, threshold, suppression, minimum_count);
  if (!recognizer.ok()) {
    std::fprintf(stderr, "bad recognizer settings\n");
    return 1;
  }
  float scores[kCategoryCount];
  long time_ms;
  while (std::scanf("%ld", &time_ms) == 1) {
    for (int c = 0; c < kCategoryCount; ++c) {
      if (std::scanf("%f", &scores[c]) != 1) {
        std::fprintf(stderr, "expected %d scores at %ld ms\n", kCategoryCount, time_ms);
        return 1;
      }
    }
    Detection d;
    if (recognizer.Process(scores, static_cast<int32_t>(time_ms), &d)) {
      std::printf("Heard %s (%.2f) @%ldms\n", d.label, static_cast<double>(d.score), static_cast<long>(d.time_ms));
    }
  }
  return recognizer.overflowed() ? 3 : 0;
}
