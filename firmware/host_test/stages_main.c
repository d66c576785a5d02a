/* Host test of the C micro front end, one DSP stage at a time: reads N frames of one stage's
 * input (raw little-endian binary) on stdin and writes that stage's output for each on stdout,
 * so a test can compare every stage alone with its Python twin (kws/audio/micro_functional.py).
 *
 *   stages_main STAGE N < input > output
 *
 * STAGE  input per frame                                 output per frame
 * window int16 samples[W]                                int16 fft_input[FFT], int32 shift
 * fft    int16 fft_input[FFT]                            int16 re[S], int16 im[S]
 * fbank  int16 re[S], int16 im[S]                        uint64 channels[C]
 * sqrt   uint64 channels[C], int32 shift                 uint32 signal[C]
 * noise  uint32 estimate[C], uint32 signal[C]            uint32 estimate[C] (updated), uint32 reduced[C]
 * pcan   uint32 estimate[C], uint32 signal[C]            uint32 signal[C]
 * log    uint32 signal[C]                                uint16 out[C]
 *
 * W = MF_WINDOW_SAMPLES, FFT = MF_FFT_SIZE, S = MF_SPECTRUM_SIZE, C = MF_NUM_CHANNELS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micro_frontend.h"

static void Read(void* dst, size_t size, size_t count) {
  if (fread(dst, size, count, stdin) != count) {
    fprintf(stderr, "stages_main: input ended early\n");
    exit(1);
  }
}

static void Write(const void* src, size_t size, size_t count) { fwrite(src, size, count, stdout); }

int main(int argc, char** argv) {
  int16_t samples[MF_WINDOW_SAMPLES], fft_input[MF_FFT_SIZE], re[MF_SPECTRUM_SIZE], im[MF_SPECTRUM_SIZE];
  uint64_t channels[MF_NUM_CHANNELS];
  uint32_t estimate[MF_NUM_CHANNELS], signal[MF_NUM_CHANNELS], reduced[MF_NUM_CHANNELS];
  uint16_t out[MF_NUM_CHANNELS];
  const char* stage;
  long frames, f;
  int32_t shift;
  if (argc != 3 || (frames = atol(argv[2])) < 0) {
    fprintf(stderr, "usage: stages_main window|fft|fbank|sqrt|noise|pcan|log N < input > output\n");
    return 2;
  }
  stage = argv[1];
  for (f = 0; f < frames; ++f) {
    if (!strcmp(stage, "window")) {
      Read(samples, sizeof(int16_t), MF_WINDOW_SAMPLES);
      shift = MfWindow(samples, fft_input);
      Write(fft_input, sizeof(int16_t), MF_FFT_SIZE);
      Write(&shift, sizeof(shift), 1);
    } else if (!strcmp(stage, "fft")) {
      Read(fft_input, sizeof(int16_t), MF_FFT_SIZE);
      MfFftReal16(fft_input, re, im);
      Write(re, sizeof(int16_t), MF_SPECTRUM_SIZE);
      Write(im, sizeof(int16_t), MF_SPECTRUM_SIZE);
    } else if (!strcmp(stage, "fbank")) {
      Read(re, sizeof(int16_t), MF_SPECTRUM_SIZE);
      Read(im, sizeof(int16_t), MF_SPECTRUM_SIZE);
      MfFilterbank(re, im, channels);
      Write(channels, sizeof(uint64_t), MF_NUM_CHANNELS);
    } else if (!strcmp(stage, "sqrt")) {
      Read(channels, sizeof(uint64_t), MF_NUM_CHANNELS);
      Read(&shift, sizeof(shift), 1);
      MfSqrtShift(channels, shift, signal);
      Write(signal, sizeof(uint32_t), MF_NUM_CHANNELS);
    } else if (!strcmp(stage, "noise")) {
      Read(estimate, sizeof(uint32_t), MF_NUM_CHANNELS);
      Read(signal, sizeof(uint32_t), MF_NUM_CHANNELS);
      MfNoiseReduction(estimate, signal, reduced);
      Write(estimate, sizeof(uint32_t), MF_NUM_CHANNELS);
      Write(reduced, sizeof(uint32_t), MF_NUM_CHANNELS);
    } else if (!strcmp(stage, "pcan")) {
      Read(estimate, sizeof(uint32_t), MF_NUM_CHANNELS);
      Read(signal, sizeof(uint32_t), MF_NUM_CHANNELS);
      MfPcan(estimate, signal);
      Write(signal, sizeof(uint32_t), MF_NUM_CHANNELS);
    } else if (!strcmp(stage, "log")) {
      Read(signal, sizeof(uint32_t), MF_NUM_CHANNELS);
      MfLogScale(signal, out);
      Write(out, sizeof(uint16_t), MF_NUM_CHANNELS);
    } else {
      fprintf(stderr, "stages_main: unknown stage %s\n", stage);
      return 2;
    }
  }
  return 0;
}
