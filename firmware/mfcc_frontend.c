/* See mfcc_frontend.h. */
#define MFCC_FRONTEND_TABLES_DEFINE
#include "mfcc_frontend.h"

#include <math.h>

#if MFCC_WINDOW_SAMPLES > MFCC_FFT_SIZE || MFCC_FFT_SIZE != 2 * MFCC_NCFFT || MFCC_NUM_BINS != MFCC_NCFFT + 1
#error "mfcc_frontend_tables.h: inconsistent sizes"
#endif

/* In-place iterative radix-2 decimation-in-time FFT of MFCC_NCFFT complex points; the input is
 * already in bit-reversed order. */
static void ComplexFft(float* re, float* im) {
  size_t half;
  for (half = 1; half < MFCC_NCFFT; half <<= 1) {
    const size_t step = MFCC_NCFFT / (2 * half); /* twiddle stride */
    size_t start;
    for (start = 0; start < MFCC_NCFFT; start += 2 * half) {
      size_t j;
      for (j = 0; j < half; ++j) {
        const float wr = kMfccTwiddles[2 * j * step];
        const float wi = kMfccTwiddles[2 * j * step + 1];
        const size_t a = start + j;
        const size_t b = a + half;
        const float tr = re[b] * wr - im[b] * wi;
        const float ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

void MfccFrontendProcessWindow(MfccFrontendState* state, const int16_t* window, float* out) {
  size_t i, k, m, j;
  /* Windowed samples x[n], n < MFCC_FFT_SIZE (zero beyond the window), packed as
   * z[i] = x[2i] + i x[2i+1] in bit-reversed order. */
  for (i = 0; i < MFCC_NCFFT; ++i) {
    const size_t n = 2 * i;
    const size_t dst = kMfccBitrev[i];
    state->re[dst] = n < MFCC_WINDOW_SAMPLES ? (float)window[n] * (1.0f / 32768.0f) * kMfccWindow[n] : 0.0f;
    state->im[dst] = n + 1 < MFCC_WINDOW_SAMPLES ? (float)window[n + 1] * (1.0f / 32768.0f) * kMfccWindow[n + 1] : 0.0f;
  }
  ComplexFft(state->re, state->im);

  /* Real split: X[k] = E[k] + W^k O[k], E = (Z[k] + conj Z[N-k]) / 2, O = (Z[k] - conj Z[N-k]) / 2i,
   * for k = 0 .. NCFFT (Z[NCFFT] = Z[0]). */
  for (k = 0; k <= MFCC_NCFFT; ++k) {
    const size_t a = k % MFCC_NCFFT;
    const size_t b = (MFCC_NCFFT - k) % MFCC_NCFFT;
    const float zr = state->re[a], zi = state->im[a];
    const float cr = state->re[b], ci = -state->im[b];
    const float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
    /* (z - c) / 2i = (dr + i di) / 2i = (di - i dr) / 2 */
    const float or_ = 0.5f * (zi - ci), oi = -0.5f * (zr - cr);
    const float wr = kMfccSplitTwiddles[2 * k], wi = kMfccSplitTwiddles[2 * k + 1];
    const float xr = er + or_ * wr - oi * wi;
    const float xi = ei + or_ * wi + oi * wr;
    state->power[k] = xr * xr + xi * xi;
  }

  for (m = 0; m < MFCC_NUM_MELS; ++m) {
    const float* w = &kMfccFilterbankWeights[kMfccFilterbankOffset[m]];
    const float* p = &state->power[kMfccFilterbankStart[m]];
    float sum = 0.0f;
    for (j = 0; j < kMfccFilterbankCount[m]; ++j) sum += w[j] * p[j];
    state->log_mel[m] = logf(sum + MFCC_LOG_OFFSET);
  }

  for (j = 0; j < MFCC_NUM_COEFFS; ++j) {
    const float* d = &kMfccDct[j * MFCC_NUM_MELS];
    float sum = 0.0f;
    for (m = 0; m < MFCC_NUM_MELS; ++m) sum += d[m] * state->log_mel[m];
    out[j] = sum;
  }
}

size_t MfccFrontendNumFrames(size_t num_samples) {
  if (num_samples < MFCC_WINDOW_SAMPLES) return 0;
  return 1 + (num_samples - MFCC_WINDOW_SAMPLES) / MFCC_STRIDE_SAMPLES;
}

size_t MfccFrontendProcessClip(MfccFrontendState* state, const int16_t* samples, size_t num_samples, float* out) {
  const size_t frames = MfccFrontendNumFrames(num_samples);
  size_t t;
  for (t = 0; t < frames; ++t) {
    MfccFrontendProcessWindow(state, samples + t * MFCC_STRIDE_SAMPLES, out + t * MFCC_NUM_COEFFS);
  }
  return frames;
}
