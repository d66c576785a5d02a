/* Host test of the C micro front end: reads raw little-endian int16 samples from a file (first
 * argument) or stdin, prints one line of MF_NUM_CHANNELS uint16 features per frame.
 *
 *   frontend_main [FILE|-] [--clip | --batch | --stages]
 *
 * By default the samples are streamed as firmware would: read in odd-sized chunks into a
 * window buffer that is advanced by MF_STRIDE_SAMPLES, one MicroFrontendProcessWindow per full
 * window, the noise estimate carried across frames. The other modes read everything, then:
 *   --clip    MicroFrontendProcessClip;
 *   --batch   MicroFrontendProcessBatch on the recording as one clip of a batch of
 *             MF_BATCH_LANES copies of it (so the lock-step lane code runs, not the one-clip
 *             fallback), every copy's features checked equal; then the final noise estimate is
 *             printed on one more line starting with "noise";
 *   --stages  the per-stage functions MfWindow .. MfLogScale, frame by frame. */
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

enum { kClip, kBatch, kStages };

static int RunWhole(FILE* in, int mode) {
  size_t cap = 1 << 16, n = 0, got, frames, f;
  int16_t* samples = (int16_t*)malloc(cap * sizeof(int16_t));
  uint16_t* out;
  int rc = 0;
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
  if (mode == kClip) {
    MicroFrontendProcessClip(&g_state, samples, n, out);
  } else if (mode == kStages) {
    for (f = 0; f < frames; ++f) {
      int16_t fft_input[MF_FFT_SIZE], re[MF_SPECTRUM_SIZE], im[MF_SPECTRUM_SIZE];
      uint64_t channels[MF_NUM_CHANNELS];
      uint32_t signal[MF_NUM_CHANNELS];
      const int shift = MfWindow(samples + f * MF_STRIDE_SAMPLES, fft_input);
      MfFftReal16(fft_input, re, im);
      MfFilterbank(re, im, channels);
      MfSqrtShift(channels, shift, signal);
      MfNoiseReduction(g_state.noise_estimate, signal, signal);
      MfPcan(g_state.noise_estimate, signal);
      MfLogScale(signal, out + f * MF_NUM_CHANNELS);
    }
  } else {
    const size_t copies = MicroFrontendBatchLanes();
    int16_t* batch = (int16_t*)malloc((n ? n : 1) * copies * sizeof(int16_t));
    uint16_t* batch_out = (uint16_t*)malloc((frames ? frames : 1) * copies * MF_NUM_CHANNELS * sizeof(uint16_t));
    uint32_t* noise = (uint32_t*)calloc(copies * MF_NUM_CHANNELS, sizeof(uint32_t));
    size_t k;
    if (!batch || !batch_out || !noise) return 1;
    for (k = 0; k < copies; ++k) memcpy(batch + k * n, samples, n * sizeof(int16_t));
    if (MicroFrontendProcessBatch(batch, copies, n, noise, batch_out) != frames) rc = 1;
    for (k = 1; k < copies; ++k) {
      if (memcmp(batch_out, batch_out + k * frames * MF_NUM_CHANNELS, frames * MF_NUM_CHANNELS * sizeof(uint16_t)) ||
          memcmp(noise, noise + k * MF_NUM_CHANNELS, MF_NUM_CHANNELS * sizeof(uint32_t))) {
        fprintf(stderr, "batch copy %zu differs from copy 0\n", k);
        rc = 1;
      }
    }
    memcpy(out, batch_out, frames * MF_NUM_CHANNELS * sizeof(uint16_t));
    memcpy(g_state.noise_estimate, noise, sizeof(g_state.noise_estimate));
    free(batch);
    free(batch_out);
    free(noise);
  }
  for (f = 0; f < frames; ++f) PrintFrame(out + f * MF_NUM_CHANNELS);
  if (mode == kBatch && frames) {
    int c;
    printf("noise");
    for (c = 0; c < MF_NUM_CHANNELS; ++c) printf(" %lu", (unsigned long)g_state.noise_estimate[c]);
    putchar('\n');
  }
  free(out);
  free(samples);
  return ferror(in) ? 1 : rc;
}

int main(int argc, char** argv) {
  FILE* in = stdin;
  int mode = -1, i, rc;
  const char* path = NULL;
  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--clip") == 0) {
      mode = kClip;
    } else if (strcmp(argv[i], "--batch") == 0) {
      mode = kBatch;
    } else if (strcmp(argv[i], "--stages") == 0) {
      mode = kStages;
    } else if (!path) {
      path = argv[i];
    } else {
      fprintf(stderr, "usage: %s [FILE|-] [--clip | --batch | --stages]\n", argv[0]);
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
  rc = mode < 0 ? RunStreaming(in) : RunWhole(in, mode);
  if (in != stdin) fclose(in);
  return rc;
}
