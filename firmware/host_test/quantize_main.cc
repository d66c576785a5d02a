// Host test driver for QuantizeFeature (tests/firmware/test_host.py builds and runs it).
// stdin: uint16 front-end values, whitespace separated; stdout: their int8 model inputs, one a
// line, with kFeatureScale / kInputScale / kInputZeroPoint of model_settings.h (include path).
#include <cstdio>

#include "model_settings.h"
#include "feature_quantize.h"

int main() {
  unsigned long value;
  while (std::scanf("%lu", &value) == 1) {
    if (value > 65535) {
      std::fprintf(stderr, "%lu is not a uint16\n", value);
      return 1;
    }
    std::printf("%d\n", static_cast<int>(QuantizeFeature(static_cast<uint16_t>(value))));
  }
  return 0;
}
