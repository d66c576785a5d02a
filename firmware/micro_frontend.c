/* The TFLM micro front end in plain C99, bit-exact with kws/micro_frontend.py; see
 * micro_frontend.h. Each step below follows the Python reference's fixed-point arithmetic;
 * the constants are in the generated micro_frontend_tables.h.
 *
 * Assumes two's complement and an arithmetic right shift of negative signed integers (gcc,
 * clang, arm-none-eabi-gcc), matching Python's floor shift. */
#define MICRO_FRONTEND_TABLES_DEFINE
#include "micro_frontend.h"

#define MF_MASK32 0xFFFFFFFFull
#define MF_WINDOW_BITS 12
#define MF_PCAN_SNR_BITS 12
#define MF_PCAN_OUTPUT_BITS 6
#define MF_LOG_SCALE_BITS 16
#define MF_LOG_SEGMENTS_BITS 7
#define MF_LOG_COEFF 45426 /* ln(2) in Q16 */

#if MF_FFT_SIZE != 2 * MF_NCFFT || MF_SPECTRUM_SIZE != MF_NCFFT + 1
#error "micro_frontend_tables.h: inconsistent FFT sizes"
#endif
#if MF_WINDOW_SAMPLES > MF_FFT_SIZE
#error "micro_frontend_tables.h: window longer than the FFT"
#endif

/* Store into int16, wrapping modulo 2^16 (portable form of the C assignment). */
static int32_t Wrap16(int32_t x) { return (int32_t)((((uint32_t)x & 0xFFFFu) ^ 0x8000u)) - 0x8000; }

/* Store into int32, wrapping modulo 2^32. */
static int64_t Wrap32(int64_t x) { return (int64_t)(((uint64_t)x & MF_MASK32) ^ 0x80000000ull) - 0x80000000ll; }

static int BitLength64(uint64_t x) {
#if defined(__GNUC__)
  return x ? 64 - __builtin_clzll(x) : 0;
#else
  int n = 0;
  while (x) {
    x >>= 1;
    ++n;
  }
  return n;
#endif
}

/* (x + 2^14) >> 15: rounding Q15 product back to Q0. */
static int32_t SRound(int32_t x) { return (x + (1 << 14)) >> 15; }

/* FIXDIV: x * (32767 / div), rounded; always fits in int16. */
static int32_t FixDiv(int32_t x, int32_t div) { return SRound(x * (32767 / div)); }

/* ---------------------------------------------------------------------------------------- */
/* 16-bit KISS FFT, kiss_fftr on MF_FFT_SIZE real samples.                                   */
/* ---------------------------------------------------------------------------------------- */

static void Butterfly2(int16_t* re, int16_t* im, int m, int fstride) {
  int k;
  for (k = 0; k < m; ++k) {
    const int t = ((fstride * k) % MF_NCFFT) * 2;
    const int32_t wr = kMfTwiddles[t], wi = kMfTwiddles[t + 1];
    const int32_t f0r = FixDiv(re[k], 2), f0i = FixDiv(im[k], 2);
    const int32_t f1r = FixDiv(re[m + k], 2), f1i = FixDiv(im[m + k], 2);
    /* |f1| <= 2^14: the product fits unwrapped. */
    const int32_t tr = SRound(f1r * wr - f1i * wi), ti = SRound(f1r * wi + f1i * wr);
    re[k] = (int16_t)Wrap16(f0r + tr);
    im[k] = (int16_t)Wrap16(f0i + ti);
    re[m + k] = (int16_t)Wrap16(f0r - tr);
    im[m + k] = (int16_t)Wrap16(f0i - ti);
  }
}

static void Butterfly4(int16_t* re, int16_t* im, int m, int fstride) {
  int k, q;
  for (k = 0; k < m; ++k) {
    int32_t fr[4], fi[4], sr[3], si[3];
    for (q = 0; q < 4; ++q) {
      fr[q] = FixDiv(re[q * m + k], 4);
      fi[q] = FixDiv(im[q * m + k], 4);
    }
    /* |f| <= 2^13 after the divide by 4: the twiddle products fit unwrapped. */
    for (q = 1; q < 4; ++q) {
      const int t = ((q * fstride * k) % MF_NCFFT) * 2;
      const int32_t wr = kMfTwiddles[t], wi = kMfTwiddles[t + 1];
      sr[q - 1] = SRound(fr[q] * wr - fi[q] * wi);
      si[q - 1] = SRound(fr[q] * wi + fi[q] * wr);
    }
    {
      /* Every output is stored into int16 once; modular wrap makes intermediate wraps moot. */
      const int32_t s5r = fr[0] - sr[1], s5i = fi[0] - si[1];
      const int32_t f0r = fr[0] + sr[1], f0i = fi[0] + si[1];
      const int32_t s3r = sr[0] + sr[2], s3i = si[0] + si[2];
      const int32_t s4r = sr[0] - sr[2], s4i = si[0] - si[2];
      re[k] = (int16_t)Wrap16(f0r + s3r);
      im[k] = (int16_t)Wrap16(f0i + s3i);
      re[m + k] = (int16_t)Wrap16(s5r + s4i);
      im[m + k] = (int16_t)Wrap16(s5i - s4r);
      re[2 * m + k] = (int16_t)Wrap16(f0r - s3r);
      im[2 * m + k] = (int16_t)Wrap16(f0i - s3i);
      re[3 * m + k] = (int16_t)Wrap16(s5r - s4i);
      im[3 * m + k] = (int16_t)Wrap16(s5i + s4r);
    }
  }
}

/* Real FFT of state->fft_input into state->spec_re/spec_im (bins 0 .. MF_NCFFT). */
static void KissFftr16(MicroFrontendState* state) {
  int16_t* re = state->work_re;
  int16_t* im = state->work_im;
  const int n = MF_NCFFT;
  int i, s, k;
  /* Decimation in time: (even, odd) sample pairs as complex inputs, in the stages' order. */
  for (i = 0; i < n; ++i) {
    re[i] = state->fft_input[2 * kMfFftOrder[i]];
    im[i] = state->fft_input[2 * kMfFftOrder[i] + 1];
  }
  for (s = 0; s < MF_FFT_NUM_STAGES; ++s) {
    const int p = kMfFftStages[3 * s], m = kMfFftStages[3 * s + 1], fstride = kMfFftStages[3 * s + 2];
    int g;
    for (g = 0; g < n; g += p * m) {
      if (p == 4) {
        Butterfly4(re + g, im + g, m, fstride);
      } else {
        Butterfly2(re + g, im + g, m, fstride);
      }
    }
  }
  /* Real split post pass. */
  {
    const int32_t dcr = FixDiv(re[0], 2), dci = FixDiv(im[0], 2);
    state->spec_re[0] = (int16_t)Wrap16(dcr + dci);
    state->spec_im[0] = 0;
    state->spec_re[n] = (int16_t)Wrap16(dcr - dci);
    state->spec_im[n] = 0;
  }
  for (k = 1; k <= n / 2; ++k) {
    const int32_t fpkr = FixDiv(re[k], 2), fpki = FixDiv(im[k], 2);
    const int32_t fpnkr = FixDiv(re[n - k], 2), fpnki = FixDiv(Wrap16(-(int32_t)im[n - k]), 2);
    const int32_t f1r = Wrap16(fpkr + fpnkr), f1i = Wrap16(fpki + fpnki);
    const int32_t f2r = Wrap16(fpkr - fpnkr), f2i = Wrap16(fpki - fpnki);
    const int32_t wr = kMfSuperTwiddles[2 * (k - 1)], wi = kMfSuperTwiddles[2 * (k - 1) + 1];
    /* |f2| * |w| * sqrt(2) < 2^31: no int32 overflow. */
    const int32_t twr = Wrap16(SRound(f2r * wr - f2i * wi)), twi = Wrap16(SRound(f2r * wi + f2i * wr));
    if (k < n / 2) {
      state->spec_re[k] = (int16_t)Wrap16((f1r + twr) >> 1);
      state->spec_im[k] = (int16_t)Wrap16((f1i + twi) >> 1);
    }
    /* Bin n/2 is written twice in the C loop; the n - k write wins. */
    state->spec_re[n - k] = (int16_t)Wrap16((f1r - twr) >> 1);
    state->spec_im[n - k] = (int16_t)Wrap16((twi - f1i) >> 1);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Filterbank back end                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* Sqrt64: integer square root rounded to nearest; below 2^32 it saturates at 0xFFFF. */
static uint64_t Sqrt64Rounded(uint64_t x) {
  uint64_t r = 0, rem = x, bit = 1ull << 62;
  uint64_t cap;
  while (bit > x) bit >>= 2;
  while (bit) {
    if (rem >= r + bit) {
      rem -= r + bit;
      r = (r >> 1) + bit;
    } else {
      r >>= 1;
    }
    bit >>= 2;
  }
  /* r = floor(sqrt(x)), rem = x - r^2 */
  cap = x < (1ull << 32) ? 0xFFFFull : 0xFFFFFFFFull;
  if (rem > r && r != cap) ++r;
  return r;
}

/* PCAN gain for a noise estimate: piecewise-quadratic interpolation per octave. */
static uint32_t WideDynamicFunction(uint32_t x) {
  int interval, base;
  uint32_t frac;
  int64_t result;
  if (x <= 2) return (uint32_t)(int32_t)kMfPcanGainLut[x];
  interval = BitLength64(x);
  base = 4 * interval - 6;
  frac = (interval < 11 ? x << (11 - interval) : x >> (interval - 11)) & 0x3FF;
  result = ((int64_t)kMfPcanGainLut[base + 2] * (int64_t)frac) >> 5;
  result = Wrap32(result + (int64_t)kMfPcanGainLut[base + 1] * 32);
  result = Wrap32(result * (int64_t)frac);
  result = ((result + (1 << 14)) >> 15) + kMfPcanGainLut[base];
  return (uint32_t)Wrap16((int32_t)Wrap32(result)); /* int16 -> uint32 */
}

static uint64_t PcanShrink(uint64_t x) {
  if (x < (2u << MF_PCAN_SNR_BITS)) return (x * x) >> (2 + 2 * MF_PCAN_SNR_BITS - MF_PCAN_OUTPUT_BITS);
  return (x >> (MF_PCAN_SNR_BITS - MF_PCAN_OUTPUT_BITS)) - (1u << MF_PCAN_OUTPUT_BITS);
}

/* LogScaleApply: Q16 log2 via the 128-segment table, times ln 2, scaled by 2^scale_shift. */
static uint16_t LogScale(uint64_t signal) {
  const uint64_t x = (signal << MF_CORRECTION_BITS) & MF_MASK32;
  int integer;
  int64_t frac, base_seg, c0, c1, rel, log2, loge, scaled;
  if (!MF_ENABLE_LOG) return (uint16_t)(signal > 0xFFFF ? 0xFFFF : signal);
  if (x <= 1) return 0;
  integer = BitLength64(x) - 1;
  frac = (int64_t)(x - (1ull << integer));
  frac = integer < MF_LOG_SCALE_BITS ? frac << (MF_LOG_SCALE_BITS - integer) : frac >> (integer - MF_LOG_SCALE_BITS);
  base_seg = frac >> (MF_LOG_SCALE_BITS - MF_LOG_SEGMENTS_BITS);
  c0 = kMfLogLut[base_seg];
  c1 = kMfLogLut[base_seg + 1];
  rel = ((c1 - c0) * (frac - ((1 << MF_LOG_SCALE_BITS) >> MF_LOG_SEGMENTS_BITS) * base_seg)) >> MF_LOG_SCALE_BITS;
  log2 = (int64_t)((uint64_t)(((int64_t)integer << MF_LOG_SCALE_BITS) + frac + c0 + rel) & MF_MASK32);
  loge = (MF_LOG_COEFF * log2 + (1 << (MF_LOG_SCALE_BITS - 1))) >> MF_LOG_SCALE_BITS;
  scaled = (int64_t)((((uint64_t)loge << MF_SCALE_SHIFT) & MF_MASK32) + (1u << (MF_LOG_SCALE_BITS - 1))) >> MF_LOG_SCALE_BITS;
  return (uint16_t)(scaled > 0xFFFF ? 0xFFFF : scaled);
}

/* ---------------------------------------------------------------------------------------- */
/* API                                                                                       */
/* ---------------------------------------------------------------------------------------- */

void MicroFrontendInit(MicroFrontendState* state) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) state->noise_estimate[c] = 0;
}

void MicroFrontendProcessWindow(MicroFrontendState* state, const int16_t* window, uint16_t* out) {
  int i, c, shift;
  int32_t max_abs = 0;
  /* Q12 window, then scale the frame up so its peak uses the FFT's 16 bits. */
  for (i = 0; i < MF_WINDOW_SAMPLES; ++i) {
    const int32_t w = ((int32_t)window[i] * kMfWindow[i]) >> MF_WINDOW_BITS;
    const int32_t a = w < 0 ? -w : w;
    state->fft_input[i] = (int16_t)w; /* |w| <= 32768 * 4096 >> 12 fits int16 */
    if (a > max_abs) max_abs = a;
  }
  shift = 15 - BitLength64((uint64_t)max_abs);
  if (shift < 0) shift = 0; /* a -32768 peak */
  for (i = 0; i < MF_WINDOW_SAMPLES; ++i) {
    state->fft_input[i] = (int16_t)Wrap16((int32_t)((uint32_t)(int32_t)state->fft_input[i] << shift));
  }
  for (i = MF_WINDOW_SAMPLES; i < MF_FFT_SIZE; ++i) state->fft_input[i] = 0;

  KissFftr16(state);

  for (c = 0; c < MF_NUM_CHANNELS; ++c) {
    /* Mel filterbank on the energy (the tables zero the weights outside [start, end)). */
    const int first = kMfFilterbankStart[c], count = kMfFilterbankCount[c];
    const uint16_t* weights = kMfFilterbankWeights + kMfFilterbankOffset[c];
    uint64_t channel = 0, signal, s_up, estimate, floor_value, reduced;
    int b;
    for (b = 0; b < count; ++b) {
      const int32_t r = state->spec_re[first + b], im = state->spec_im[first + b];
      const uint64_t energy = (uint64_t)(r * r) + (uint64_t)(im * im);
      channel += energy * weights[b];
    }
    signal = Sqrt64Rounded(channel) >> shift;

    /* Noise reduction: the running per-channel estimate is subtracted, down to a floor. */
    s_up = (signal << MF_SMOOTHING_BITS) & MF_MASK32;
    estimate = ((s_up * kMfNoiseSmoothing[c] +
                 (uint64_t)state->noise_estimate[c] * ((1u << MF_NOISE_REDUCTION_BITS) - kMfNoiseSmoothing[c])) >>
                MF_NOISE_REDUCTION_BITS) &
               MF_MASK32;
    state->noise_estimate[c] = (uint32_t)estimate;
    floor_value = ((signal * MF_MIN_SIGNAL_REMAINING) >> MF_NOISE_REDUCTION_BITS) & MF_MASK32;
    reduced = (s_up - (estimate < s_up ? estimate : s_up)) >> MF_SMOOTHING_BITS;
    if (reduced < floor_value) reduced = floor_value;

    if (MF_ENABLE_PCAN) {
      /* Only the low 32 bits survive, so the unsigned product's wrap is harmless. */
      reduced = PcanShrink(((reduced * WideDynamicFunction((uint32_t)estimate)) >> MF_SNR_SHIFT) & MF_MASK32);
    }
    out[c] = LogScale(reduced);
  }
}

size_t MicroFrontendNumFrames(size_t num_samples) {
  if (num_samples < MF_WINDOW_SAMPLES) return 0;
  return 1 + (num_samples - MF_WINDOW_SAMPLES) / MF_STRIDE_SAMPLES;
}

size_t MicroFrontendProcessClip(MicroFrontendState* state, const int16_t* samples, size_t num_samples, uint16_t* out) {
  const size_t frames = MicroFrontendNumFrames(num_samples);
  size_t f;
  for (f = 0; f < frames; ++f) {
    MicroFrontendProcessWindow(state, samples + f * MF_STRIDE_SAMPLES, out + f * MF_NUM_CHANNELS);
  }
  return frames;
}
