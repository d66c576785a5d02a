/* What micro_frontend.c was compiled with, for the training library's Python binding
 * (kws/audio/micro_frontend_c.py), which checks it against the front end it stands in for.
 * Host only: the board never links this file. */
#include <stdint.h>

#include "micro_frontend.h"

/* out[0..8]: sample rate, window samples, stride samples, channels, FFT size, PCAN on, log on,
 * batch lanes, noise-estimate smoothing bits. */
void MicroFrontendBuildInfo(int64_t* out) {
  out[0] = MF_SAMPLE_RATE;
  out[1] = MF_WINDOW_SAMPLES;
  out[2] = MF_STRIDE_SAMPLES;
  out[3] = MF_NUM_CHANNELS;
  out[4] = MF_FFT_SIZE;
  out[5] = MF_ENABLE_PCAN;
  out[6] = MF_ENABLE_LOG;
  out[7] = MF_BATCH_LANES;
  out[8] = MF_SMOOTHING_BITS;
}
