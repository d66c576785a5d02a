/* Host test of the C micro front end: reads raw little-endian int16 samples from a file (first
 * argument) or stdin, prints one line of MF_NUM_CHANNELS uint16 features per frame.
 *
 *   frontend_main [FILE|-] [--clip]
 *
 * By default the samples are streamed as firmware would: read in odd-sized chunks into a
 * window buffer that is advanced by MF_STRIDE_SAMPLES, one MicroFrontendProcessWindow per full
 * window, the noise estimate carried across frames. --clip reads everything and calls
 * MicroFrontendProcessClip instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micro_frontend.h"

#define CHUNK 173 /* deliberately not a divisor of the stride */

static MicroFrontendState g_state;

static void PrintFrame(const uint16_t* values) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) printf(c ? " %u" : "%u", (unsigned)values[c]);
  putchar('\n');
}

static size_t ReadSamples(FILE* in, int16_t* dst, size_t n) {
  unsigned char bytes[2 * CHUNK];
  size_t got, i;
  if (n > CHUNK) n = CHUNK;
  got = fread(bytes, 2, n, in);
  for (i = 0; i < got; ++i) dst[i] = (int16_t)(uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
  return got;
}

static int RunStreaming(FILE* in) {
  int16_t window[MF_WINDOW_SAMPLES];
  int16_t chunk[CHUNK];
  uint16_t out[MF_NUM_CHANNELS];
  size_t filled = 0, to_skip = 0, got;
  while ((got = ReadSamples(in, chunk, CHUNK)) > 0) {
    size_t i = 0;
    while (i < got) {
      if (to_skip) {
        --to_skip;
        ++i;
        continue;
      }
      window[filled++] = chunk[i++];
      if (filled == MF_WINDOW_SAMPLES) {
        MicroFrontendProcessWindow(&g_state, window, out);
        PrintFrame(out);
        if (MF_STRIDE_SAMPLES < MF_WINDOW_SAMPLES) {
          filled = MF_WINDOW_SAMPLES - MF_STRIDE_SAMPLES;
          memmove(window, window + MF_STRIDE_SAMPLES, filled * sizeof(window[0]));
        } else {
          filled = 0;
          to_skip = MF_STRIDE_SAMPLES - MF_WINDOW_SAMPLES;
        }
      }
    }
  }
  return ferror(in) ? 1 : 0;
}

static int RunClip(FILE* in) {
  size_t cap = 1 << 16, n = 0, got, frames, f;
  int16_t* samples = (int16_t*)malloc(cap * sizeof(int16_t));
  uint16_t* out;
  if (!samples) return 1;
  for (;;) {
    if (n + CHUNK > cap) {
      int16_t* grown = (int16_t*)realloc(samples, 2 * cap * sizeof(int16_t));
      if (!grown) return 1;
      samples = grown;
      cap *= 2;
    }
    got = ReadSamples(in, samples + n, CHUNK);
    if (!got) break;
    n += got;
  }
  frames = MicroFrontendNumFrames(n);
  out = (uint16_t*)malloc((frames ? frames : 1) * MF_NUM_CHANNELS * sizeof(uint16_t));
  if (!out) return 1;
  MicroFrontendProcessClip(&g_state, samples, n, out);
  for (f = 0; f < frames; ++f) PrintFrame(out + f * MF_NUM_CHANNELS);
  free(out);
  free(samples);
  return ferror(in) ? 1 : 0;
}

int main(int argc, char** argv) {
  FILE* in = stdin;
  int clip = 0, i, rc;
  const char* path = NULL;
  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--clip") == 0) {
      clip = 1;
    } else if (!path) {
      path = argv[i];
    } else {
      fprintf(stderr, "usage: %s [FILE|-] [--clip]\n", argv[0]);
      return 2;
    }
  }
  if (path && strcmp(path, "-") != 0) {
    in = fopen(path, "rb");
    if (!in) {
      perror(path);
      return 1;
    }
  }
  MicroFrontendInit(&g_state);
  rc = clip ? RunClip(in) : RunStreaming(in);
  if (in != stdin) fclose(in);
  return rc;
}
