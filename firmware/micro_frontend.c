/* The TFLM micro front end in plain C99, bit-exact with kws/audio/micro_frontend.py; see
 * micro_frontend.h. Each step below follows the Python reference's fixed-point arithmetic;
 * the constants are in the generated micro_frontend_tables.h.
 *
 * Assumes two's complement and an arithmetic right shift of negative signed integers (gcc,
 * clang, arm-none-eabi-gcc), matching Python's floor shift.
 *
 * Layout. Every stage is written once, for L "lanes" (clips processed in lock-step, lane
 * innermost: element i of lane l is at [i * L + l]). The board and the per-frame API use L = 1,
 * where the lane loops vanish and the code is the plain per-frame front end; the host's batch
 * API uses L = MF_BATCH_LANES, where the innermost lane loops have a constant trip count and
 * the compiler vectorizes them across clips. The per-value steps of the back end (square root,
 * noise reduction, PCAN, log) are single-value inline functions that both paths call. Every
 * lane loop is branch-free (selects, no early returns), so that it vectorizes.
 *
 * Exact integer work on the FPU (MF_FLOAT_PATHS, on by default on 64-bit hosts, off on the
 * board, whose FPU is single precision and which has no vector unit to feed): bit lengths from
 * the exponent of an exactly converted float, and the square root from a double estimate within
 * 1 of the root, corrected to the exact integer root in integer arithmetic. The latter needs
 * every filterbank sum below 2^52 (an energy <= 2^31 times a weight <= 2^12, summed over fewer
 * than MF_SPECTRUM_SIZE bins), hence MF_FLOAT_SQRT only for MF_SPECTRUM_SIZE < 512.
 *
 * Bit-exactness is checked against the original per-frame implementation, and through it
 * against the Python reference, by tests/firmware/test_frontend.py and the host_test drivers. */
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
#if MF_BATCH_LANES < 1
#error "MF_BATCH_LANES must be at least 1"
#endif

#ifndef MF_FLOAT_PATHS
#define MF_FLOAT_PATHS (MF_BATCH_LANES > 1)
#endif
#if MF_FLOAT_PATHS && MF_SPECTRUM_SIZE < 512
#define MF_FLOAT_SQRT 1
#else
#define MF_FLOAT_SQRT 0 /* filterbank sums could reach 2^52: the integer root */
#endif

#if defined(__GNUC__)
#define MF_INLINE static inline __attribute__((always_inline))
#else
#define MF_INLINE static inline
#endif
#if defined(__cplusplus)
#define MF_RESTRICT
#else
#define MF_RESTRICT restrict
#endif

/* A loop over the L lanes. Kept rolled until the vectorizer has seen it: GCC fully unrolls short
 * constant loops before vectorizing, and the unrolled lanes then only partly re-vectorize. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define MF_FOR_LANES(l, L) _Pragma("GCC unroll 1") for (l = 0; l < (L); ++l)
#define MF_UNROLL_LANES _Pragma("GCC unroll 64")
#else
#define MF_FOR_LANES(l, L) for (l = 0; l < (L); ++l)
#define MF_UNROLL_LANES
#endif

/* Store into int16, wrapping modulo 2^16 (portable form of the C assignment). */
MF_INLINE int32_t Wrap16(int32_t x) { return (int32_t)((((uint32_t)x & 0xFFFFu) ^ 0x8000u)) - 0x8000; }

/* uint32 -> int32 modulo 2^32 (portable; compiles to nothing). */
MF_INLINE int32_t ToInt32(uint32_t u) {
  return u < 0x80000000u ? (int32_t)u : (int32_t)(u - 0x80000000u) - 0x7FFFFFFF - 1;
}

/* Number of bits of x (0 for 0). */
MF_INLINE int BitLength32(uint32_t x) {
#if MF_FLOAT_PATHS
  /* The exponent of an exactly converted float (vectorizes without a count-leading-zeros
   * instruction): x itself below 2^24, else x >> 8. Branch-free, so that it vectorizes. */
  const int big = (x >= (1u << 24)) << 3;
  union {
    float f;
    uint32_t u;
  } v;
  int e;
  v.f = (float)(int32_t)(x >> big);
  e = (int)(v.u >> 23) - 126 + big; /* x = 0: -126 */
  return e > 0 ? e : 0;
#elif defined(__GNUC__)
  return x ? 32 - __builtin_clz((unsigned int)x) : 0;
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
MF_INLINE int32_t SRound(int32_t x) { return (x + (1 << 14)) >> 15; }

/* FIXDIV: x * (32767 / div), rounded; always fits in int16 (|FixDiv(x, 2)| <= 16383,
 * |FixDiv(x, 4)| <= 8191). */
MF_INLINE int32_t FixDiv(int32_t x, int32_t div) { return SRound(x * (32767 / div)); }

/* ---------------------------------------------------------------------------------------- */
/* Stage 1: window and scale-up shift                                                        */
/* ---------------------------------------------------------------------------------------- */

/* x: MF_WINDOW_SAMPLES samples per lane ([i * L + l]); fft_input: MF_FFT_SIZE per lane. */
MF_INLINE void WindowLanes(const int16_t* MF_RESTRICT x, int16_t* MF_RESTRICT fft_input, int* MF_RESTRICT shift, int L) {
  uint16_t max_abs[MF_BATCH_LANES], scale[MF_BATCH_LANES];
  int i, l;
  MF_FOR_LANES(l, L) max_abs[l] = 0;
  /* Q12 window, then scale the frame up so its peak uses the FFT's 16 bits. */
  for (i = 0; i < MF_WINDOW_SAMPLES; ++i) {
    const int32_t win = kMfWindow[i];
    MF_FOR_LANES(l, L) {
      const int32_t w = ((int32_t)x[i * L + l] * win) >> MF_WINDOW_BITS; /* |w| <= 32768 * 4096 >> 12 fits int16 */
      const uint16_t a = (uint16_t)(w < 0 ? -w : w);                   /* <= 32768 */
      fft_input[i * L + l] = (int16_t)w;
      max_abs[l] = a > max_abs[l] ? a : max_abs[l];
    }
  }
  MF_FOR_LANES(l, L) {
    const int s = 15 - BitLength32(max_abs[l]);
    shift[l] = s < 0 ? 0 : s; /* 0 for a -32768 peak */
    scale[l] = (uint16_t)(1u << shift[l]);
  }
  /* wrap16(w << shift), as a 16-bit multiply by 2^shift. */
  for (i = 0; i < MF_WINDOW_SAMPLES; ++i) {
    MF_FOR_LANES(l, L) {
      fft_input[i * L + l] = (int16_t)Wrap16((int32_t)((uint32_t)(uint16_t)fft_input[i * L + l] * scale[l]));
    }
  }
  for (i = MF_WINDOW_SAMPLES * L; i < MF_FFT_SIZE * L; ++i) fft_input[i] = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 2: 16-bit KISS FFT, kiss_fftr on MF_FFT_SIZE real samples.                          */
/* ---------------------------------------------------------------------------------------- */

/* One radix-4 butterfly column: legs r0..r3 / i0..i3 (L lanes each), twiddles w1..w3. */
MF_INLINE void Bfly4(int16_t* MF_RESTRICT r0, int16_t* MF_RESTRICT r1, int16_t* MF_RESTRICT r2, int16_t* MF_RESTRICT r3,
                     int16_t* MF_RESTRICT i0, int16_t* MF_RESTRICT i1, int16_t* MF_RESTRICT i2, int16_t* MF_RESTRICT i3,
                     const int16_t* tw1, const int16_t* tw2, const int16_t* tw3, int unit, int L) {
  const int32_t w1r = tw1[0], w1i = tw1[1], w2r = tw2[0], w2i = tw2[1], w3r = tw3[0], w3i = tw3[1];
  int l;
  MF_FOR_LANES(l, L) {
    const int32_t f0r = FixDiv(r0[l], 4), f0i = FixDiv(i0[l], 4);
    const int32_t f1r = FixDiv(r1[l], 4), f1i = FixDiv(i1[l], 4);
    const int32_t f2r = FixDiv(r2[l], 4), f2i = FixDiv(i2[l], 4);
    const int32_t f3r = FixDiv(r3[l], 4), f3i = FixDiv(i3[l], 4);
    /* |f| <= 2^13 after the divide by 4: the twiddle products fit unwrapped. */
    /* unit: every twiddle is kMfTwiddles[0] = (32767, 0), the identity on |f| <= 16383. */
    const int32_t s0r = unit ? f1r : SRound(f1r * w1r - f1i * w1i), s0i = unit ? f1i : SRound(f1r * w1i + f1i * w1r);
    const int32_t s1r = unit ? f2r : SRound(f2r * w2r - f2i * w2i), s1i = unit ? f2i : SRound(f2r * w2i + f2i * w2r);
    const int32_t s2r = unit ? f3r : SRound(f3r * w3r - f3i * w3i), s2i = unit ? f3i : SRound(f3r * w3i + f3i * w3r);
    /* Every output is stored into int16 once; modular wrap makes intermediate wraps moot. */
    const int32_t s5r = f0r - s1r, s5i = f0i - s1i;
    const int32_t g0r = f0r + s1r, g0i = f0i + s1i;
    const int32_t s3r = s0r + s2r, s3i = s0i + s2i;
    const int32_t s4r = s0r - s2r, s4i = s0i - s2i;
    r0[l] = (int16_t)Wrap16(g0r + s3r);
    i0[l] = (int16_t)Wrap16(g0i + s3i);
    r1[l] = (int16_t)Wrap16(s5r + s4i);
    i1[l] = (int16_t)Wrap16(s5i - s4r);
    r2[l] = (int16_t)Wrap16(g0r - s3r);
    i2[l] = (int16_t)Wrap16(g0i - s3i);
    r3[l] = (int16_t)Wrap16(s5r - s4i);
    i3[l] = (int16_t)Wrap16(s5i + s4r);
  }
}

MF_INLINE void Bfly2(int16_t* MF_RESTRICT r0, int16_t* MF_RESTRICT r1, int16_t* MF_RESTRICT i0, int16_t* MF_RESTRICT i1,
                     const int16_t* tw, int L) {
  const int32_t wr = tw[0], wi = tw[1];
  int l;
  MF_FOR_LANES(l, L) {
    const int32_t f0r = FixDiv(r0[l], 2), f0i = FixDiv(i0[l], 2);
    const int32_t f1r = FixDiv(r1[l], 2), f1i = FixDiv(i1[l], 2);
    /* |f1| <= 2^14: the product fits unwrapped. */
    const int32_t tr = SRound(f1r * wr - f1i * wi), ti = SRound(f1r * wi + f1i * wr);
    r0[l] = (int16_t)Wrap16(f0r + tr);
    i0[l] = (int16_t)Wrap16(f0i + ti);
    r1[l] = (int16_t)Wrap16(f0r - tr);
    i1[l] = (int16_t)Wrap16(f0i - ti);
  }
}

/* The deepest stage (m = 1, so every twiddle is kMfTwiddles[0] = (32767, 0), which maps any
 * |f| <= 16383 to itself through SRound: the butterflies need no multiplies), reading its
 * inputs straight from the real frame in the KISS decimation-in-time order. */
MF_INLINE void FirstStageLanes(const int16_t* MF_RESTRICT in, int16_t* MF_RESTRICT re, int16_t* MF_RESTRICT im, int L) {
  const int p = kMfFftStages[0];
  int g, l;
  if (p == 4) {
    for (g = 0; g < MF_NCFFT; g += 4) {
      const int16_t* x0 = in + 2 * kMfFftOrder[g] * L;
      const int16_t* x1 = in + 2 * kMfFftOrder[g + 1] * L;
      const int16_t* x2 = in + 2 * kMfFftOrder[g + 2] * L;
      const int16_t* x3 = in + 2 * kMfFftOrder[g + 3] * L;
      int16_t* r = re + g * L;
      int16_t* i = im + g * L;
      MF_FOR_LANES(l, L) {
        const int32_t f0r = FixDiv(x0[l], 4), f0i = FixDiv(x0[L + l], 4);
        const int32_t f1r = FixDiv(x1[l], 4), f1i = FixDiv(x1[L + l], 4);
        const int32_t f2r = FixDiv(x2[l], 4), f2i = FixDiv(x2[L + l], 4);
        const int32_t f3r = FixDiv(x3[l], 4), f3i = FixDiv(x3[L + l], 4);
        const int32_t s5r = f0r - f2r, s5i = f0i - f2i;
        const int32_t g0r = f0r + f2r, g0i = f0i + f2i;
        const int32_t s3r = f1r + f3r, s3i = f1i + f3i;
        const int32_t s4r = f1r - f3r, s4i = f1i - f3i;
        r[l] = (int16_t)Wrap16(g0r + s3r);
        i[l] = (int16_t)Wrap16(g0i + s3i);
        r[L + l] = (int16_t)Wrap16(s5r + s4i);
        i[L + l] = (int16_t)Wrap16(s5i - s4r);
        r[2 * L + l] = (int16_t)Wrap16(g0r - s3r);
        i[2 * L + l] = (int16_t)Wrap16(g0i - s3i);
        r[3 * L + l] = (int16_t)Wrap16(s5r - s4i);
        i[3 * L + l] = (int16_t)Wrap16(s5i + s4r);
      }
    }
  } else {
    for (g = 0; g < MF_NCFFT; g += 2) {
      const int16_t* x0 = in + 2 * kMfFftOrder[g] * L;
      const int16_t* x1 = in + 2 * kMfFftOrder[g + 1] * L;
      int16_t* r = re + g * L;
      int16_t* i = im + g * L;
      MF_FOR_LANES(l, L) {
        const int32_t f0r = FixDiv(x0[l], 2), f0i = FixDiv(x0[L + l], 2);
        const int32_t f1r = FixDiv(x1[l], 2), f1i = FixDiv(x1[L + l], 2);
        r[l] = (int16_t)Wrap16(f0r + f1r);
        i[l] = (int16_t)Wrap16(f0i + f1i);
        r[L + l] = (int16_t)Wrap16(f0r - f1r);
        i[L + l] = (int16_t)Wrap16(f0i - f1i);
      }
    }
  }
}

/* kiss_fftr's real-split post pass, in place: re/im hold the half-size complex FFT in bins
 * 0 .. MF_NCFFT - 1 and receive the real spectrum's bins 0 .. MF_NCFFT. Each k reads and writes
 * only bins k and n - k. */
MF_INLINE void RealSplitLanes(int16_t* MF_RESTRICT re, int16_t* MF_RESTRICT im, int L) {
  const int n = MF_NCFFT;
  int k, l;
  MF_FOR_LANES(l, L) {
    const int32_t dcr = FixDiv(re[l], 2), dci = FixDiv(im[l], 2);
    re[l] = (int16_t)Wrap16(dcr + dci);
    im[l] = 0;
    re[n * L + l] = (int16_t)Wrap16(dcr - dci);
    im[n * L + l] = 0;
  }
  for (k = 1; k <= n / 2; ++k) {
    const int32_t wr = kMfSuperTwiddles[2 * (k - 1)], wi = kMfSuperTwiddles[2 * (k - 1) + 1];
    /* Bin n/2 (k = n - k) is written twice in the C loop; the n - k write (the later) wins. */
    const int both = k < n / 2;
    int16_t* rk = re + k * L;
    int16_t* ik = im + k * L;
    int16_t* rnk = re + (n - k) * L;
    int16_t* ink = im + (n - k) * L;
    int32_t lo_r[MF_BATCH_LANES], lo_i[MF_BATCH_LANES];
    MF_FOR_LANES(l, L) {
      const int32_t fpkr = FixDiv(rk[l], 2), fpki = FixDiv(ik[l], 2);
      const int32_t fpnkr = FixDiv(rnk[l], 2), fpnki = FixDiv(Wrap16(-(int32_t)ink[l]), 2);
      /* |FixDiv(x, 2)| <= 16383: these sums fit in int16 (the reference's wrap is a no-op). */
      const int32_t f1r = fpkr + fpnkr, f1i = fpki + fpnki;
      const int32_t f2r = fpkr - fpnkr, f2i = fpki - fpnki;
      /* |f2| * |w| * sqrt(2) < 2^31: no int32 overflow. */
      const int32_t twr = Wrap16(SRound(f2r * wr - f2i * wi)), twi = Wrap16(SRound(f2r * wi + f2i * wr));
      lo_r[l] = Wrap16((f1r + twr) >> 1);
      lo_i[l] = Wrap16((f1i + twi) >> 1);
      rnk[l] = (int16_t)Wrap16((f1r - twr) >> 1);
      ink[l] = (int16_t)Wrap16((twi - f1i) >> 1);
    }
    if (both) {
      MF_FOR_LANES(l, L) {
        rk[l] = (int16_t)lo_r[l];
        ik[l] = (int16_t)lo_i[l];
      }
    }
  }
}

/* Real FFT of fft_input (MF_FFT_SIZE per lane) into re/im (MF_SPECTRUM_SIZE per lane). */
MF_INLINE void FftLanes(const int16_t* fft_input, int16_t* re, int16_t* im, int L) {
  int s, g;
  FirstStageLanes(fft_input, re, im, L);
  for (s = 1; s < MF_FFT_NUM_STAGES; ++s) {
    const int p = kMfFftStages[3 * s], m = kMfFftStages[3 * s + 1], fstride = kMfFftStages[3 * s + 2];
    /* No "% MF_NCFFT" on the twiddle index: q * fstride * k < p * m * fstride = MF_NCFFT. */
    for (g = 0; g < MF_NCFFT; g += p * m) {
      int16_t* r = re + g * L;
      int16_t* i = im + g * L;
      int k;
      if (p == 4) {
        Bfly4(r, r + m * L, r + 2 * m * L, r + 3 * m * L, i, i + m * L, i + 2 * m * L, i + 3 * m * L, kMfTwiddles,
              kMfTwiddles, kMfTwiddles, 1, L);
        for (k = 1; k < m; ++k) {
          Bfly4(r + k * L, r + (m + k) * L, r + (2 * m + k) * L, r + (3 * m + k) * L, i + k * L, i + (m + k) * L,
                i + (2 * m + k) * L, i + (3 * m + k) * L, kMfTwiddles + 2 * fstride * k, kMfTwiddles + 4 * fstride * k,
                kMfTwiddles + 6 * fstride * k, 0, L);
        }
      } else {
        for (k = 0; k < m; ++k) {
          Bfly2(r + k * L, r + (m + k) * L, i + k * L, i + (m + k) * L, kMfTwiddles + 2 * fstride * k, L);
        }
      }
    }
  }
  RealSplitLanes(re, im, L);
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 3: energy and mel filterbank                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Channel c's sum for each lane (the tables zero the weights outside [start, end)). */
MF_INLINE void FilterbankChannelLanes(const int16_t* re, const int16_t* im, int c, uint64_t* acc, int L) {
  const int first = kMfFilterbankStart[c], count = kMfFilterbankCount[c];
  const uint16_t* weights = kMfFilterbankWeights + kMfFilterbankOffset[c];
  int b, l;
  MF_FOR_LANES(l, L) acc[l] = 0;
  for (b = 0; b < count; ++b) {
    const int16_t* r = re + (first + b) * L;
    const int16_t* i = im + (first + b) * L;
    const uint32_t w = weights[b];
    MF_FOR_LANES(l, L) {
      const int32_t a = r[l], q = i[l];
      const uint32_t energy = (uint32_t)(a * a) + (uint32_t)(q * q); /* <= 2^31 */
      acc[l] += (uint64_t)energy * w;
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Stage 4: rounded square root, shifted back                                                */
/* ---------------------------------------------------------------------------------------- */

/* Sqrt64: integer square root rounded to nearest; below 2^32 it saturates at 0xFFFF. */
static uint64_t Sqrt64Rounded(uint64_t x) {
  uint64_t r = 0, rem = x, bit;
  uint64_t cap;
#if defined(__GNUC__)
  /* The largest power of 4 <= x (0 for 0), as the reference's `bit = 2^62; while (bit > x)
   * bit >>= 2` finds it. */
  bit = x ? 1ull << ((63 - __builtin_clzll(x)) & ~1) : 0;
#else
  bit = 1ull << 62;
  while (bit > x) bit >>= 2;
#endif
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

#if MF_FLOAT_SQRT
/* An estimate of sqrt(x) within 1 of it, for an integer x < 2^52 held exactly in a double.
 * With -fno-math-errno (or -ffast-math) the compiler's square root instruction; otherwise the
 * reciprocal square root refined by Newton steps, so that the library needs no libm and still
 * vectorizes (relative error 0.035 -> 1.9e-3 -> 5.3e-6 -> 4.2e-11 plus rounding, i.e. an
 * absolute error below 3e-3 at 2^26). */
MF_INLINE double SqrtEstimate(double x) {
#if defined(__NO_MATH_ERRNO__) && defined(__GNUC__)
  return __builtin_sqrt(x);
#else
  union {
    double d;
    uint64_t u;
  } v;
  double y, hx = 0.5 * x;
  v.d = x;
  v.u = 0x5FE6EB50C7B537A9ull - (v.u >> 1); /* 1/sqrt(x) to 3.5% (x = 0 gives a finite y) */
  y = v.d;
  y = y * (1.5 - (hx * y) * y);
  y = y * (1.5 - (hx * y) * y);
  y = y * (1.5 - (hx * y) * y);
  return x * y;
#endif
}
#endif

/* Stage 4 on one value: Sqrt64Rounded(x) >> shift. */
MF_INLINE uint32_t SqrtShift1(uint64_t x, int shift) {
#if MF_FLOAT_SQRT
  /* x < 2^52 (see the top of the file): exactly a double by the 2^52 exponent trick (vector
   * units lack a uint64 -> double conversion), a root estimate within 1, then exact integer
   * corrections (no floating-point compares: under the default -ftrapping-math they would not
   * be if-converted, so the loop would not vectorize). */
  union {
    uint64_t u;
    double d;
  } v;
  uint32_t r;
  v.u = 0x4330000000000000ull | x;
  r = (uint32_t)(int32_t)SqrtEstimate(v.d - 4503599627370496.0); /* floor(sqrt(x)) + {-1, 0, 1} */
  r -= (uint32_t)((uint64_t)r * r > x);
  r += (uint32_t)((uint64_t)(r + 1) * (r + 1) <= x); /* r = floor(sqrt(x)) */
  r += (uint32_t)((x - (uint64_t)r * r > r) & (r != (x < (1ull << 32) ? 0xFFFFu : 0xFFFFFFFFu)));
  return r >> shift;
#else
  return (uint32_t)(Sqrt64Rounded(x) >> shift);
#endif
}

/* ---------------------------------------------------------------------------------------- */
/* Stages 5-7: noise reduction, PCAN, log                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Noise reduction on one value of channel c: the running estimate is updated and subtracted,
 * down to a floor. Returns the reduced signal. */
MF_INLINE uint32_t NoiseReduction1(uint32_t* estimate, uint32_t signal, int c) {
  const uint32_t smoothing = kMfNoiseSmoothing[c];
  const uint32_t s_up = signal << MF_SMOOTHING_BITS; /* & 0xFFFFFFFF */
  const uint32_t e = (uint32_t)(((uint64_t)s_up * smoothing +
                                 (uint64_t)*estimate * ((1u << MF_NOISE_REDUCTION_BITS) - smoothing)) >>
                                MF_NOISE_REDUCTION_BITS);
  const uint32_t floor_value = (uint32_t)(((uint64_t)signal * MF_MIN_SIGNAL_REMAINING) >> MF_NOISE_REDUCTION_BITS);
  const uint32_t reduced = (s_up - (e < s_up ? e : s_up)) >> MF_SMOOTHING_BITS;
  *estimate = e;
  return reduced < floor_value ? floor_value : reduced;
}

/* Table lookups of the back end: from int32 copies of the tables when the caller has them
 * (the batch path: vector gathers load 32-bit elements only), else from the int16 tables. */
#define MF_GAIN_LUT(lut32, i) ((lut32) ? (lut32)[i] : (int32_t)kMfPcanGainLut[i])
#define MF_LOG_LUT(lut32, i) ((lut32) ? (lut32)[i] : (int32_t)kMfLogLut[i])

/* PCAN gain for a noise estimate: piecewise-quadratic interpolation per octave (int16 gain,
 * returned as the reference's int16 -> uint32). All in 32 bits: the products fit, and the
 * reference's one int32 wrap is the wrapping 32-bit multiply. */
MF_INLINE uint32_t WideDynamicFunction(uint32_t x, const int32_t* gain32) {
  const int interval = BitLength32(x);
  const int base = 4 * (interval > 2 ? interval : 2) - 6; /* (a valid index, unused, for x <= 2) */
  const int left = 11 - interval;
  const uint32_t up = x << (left > 0 ? left : 0), down = x >> (left < 0 ? -left : 0);
  const int32_t frac = (int32_t)((left > 0 ? up : down) & 0x3FF);
  const int32_t a2 = MF_GAIN_LUT(gain32, base + 2), a1 = MF_GAIN_LUT(gain32, base + 1), y0 = MF_GAIN_LUT(gain32, base);
  /* Constants (no lookup: a load used for some lanes only would not vectorize). */
  const int32_t small = x == 0 ? kMfPcanGainLut[0] : x == 1 ? kMfPcanGainLut[1] : kMfPcanGainLut[2];
  int32_t result = ((a2 * frac) >> 5) + a1 * 32; /* |.| < 2^21 */
  result = ToInt32((uint32_t)result * (uint32_t)frac);
  result = (((result >> 14) + 1) >> 1) + y0; /* = (result + 2^14) >> 15 without overflow */
  return (uint32_t)(x <= 2 ? small : Wrap16(result));
}

MF_INLINE uint32_t PcanShrink(uint32_t x) {
  const uint32_t small = (x * x) >> (2 + 2 * MF_PCAN_SNR_BITS - MF_PCAN_OUTPUT_BITS); /* x < 2^13 there */
  const uint32_t large = (x >> (MF_PCAN_SNR_BITS - MF_PCAN_OUTPUT_BITS)) - (1u << MF_PCAN_OUTPUT_BITS);
  return x < (2u << MF_PCAN_SNR_BITS) ? small : large;
}

/* PCAN on one value. Only the low 32 bits of the shifted product survive. */
MF_INLINE uint32_t Pcan1(uint32_t estimate, uint32_t reduced, const int32_t* gain32) {
  const uint32_t gain = WideDynamicFunction(estimate, gain32);
  return PcanShrink((uint32_t)(((uint64_t)reduced * gain) >> MF_SNR_SHIFT));
}

/* LogScaleApply on one value: Q16 log2 via the 128-segment table, times ln 2, scaled by
 * 2^scale_shift. The reference's 64-bit steps are split into exact 32-bit ones. */
MF_INLINE uint16_t LogScale1(uint32_t signal, const int32_t* log32) {
#if MF_ENABLE_LOG
  const uint32_t x = signal << MF_CORRECTION_BITS; /* & 0xFFFFFFFF */
  const uint32_t xs = x > 2 ? x : 2;                /* x <= 1 gives 0 below; keep the lookups in range */
  const int integer = BitLength32(xs) - 1;
  const uint32_t frac0 = xs - (1u << integer);
  const int left = MF_LOG_SCALE_BITS - integer;
  const uint32_t up = frac0 << (left > 0 ? left : 0), down = frac0 >> (left < 0 ? -left : 0);
  const uint32_t frac = left > 0 ? up : down; /* < 2^16 */
  const uint32_t base_seg = frac >> (MF_LOG_SCALE_BITS - MF_LOG_SEGMENTS_BITS);
  const int32_t c0 = MF_LOG_LUT(log32, base_seg), c1 = MF_LOG_LUT(log32, base_seg + 1);
  const int32_t seg_pos = (int32_t)(frac - ((1u << MF_LOG_SCALE_BITS) >> MF_LOG_SEGMENTS_BITS) * base_seg);
  const int32_t rel = ((c1 - c0) * seg_pos) >> MF_LOG_SCALE_BITS;
  const uint32_t log2 = ((uint32_t)integer << MF_LOG_SCALE_BITS) + frac + (uint32_t)(c0 + rel);
  /* loge = (LOG_COEFF * log2 + 2^15) >> 16, with log2 split into 16-bit halves. */
  const uint32_t loge = MF_LOG_COEFF * (log2 >> 16) + ((MF_LOG_COEFF * (log2 & 0xFFFFu) + (1u << 15)) >> 16);
  /* scaled = ((loge << scale_shift) mod 2^32 + 2^15) >> 16, without the 33rd bit. */
  const uint32_t v = loge << MF_SCALE_SHIFT;
  const uint32_t scaled = (v >> 16) + (((v & 0xFFFFu) + (1u << 15)) >> 16);
  return (uint16_t)(x <= 1 ? 0 : scaled > 0xFFFF ? 0xFFFF : scaled);
#else
  (void)log32;
  return (uint16_t)(signal > 0xFFFF ? 0xFFFF : signal);
#endif
}

/* Stages 3-7 for one frame of L lanes: noise[c * L + l] is lane l's state, out[c * L + l] its
 * output. gain32/log32: int32 copies of the PCAN and log tables, or NULL. */
MF_INLINE void BackEndLanes(const int16_t* MF_RESTRICT re, const int16_t* MF_RESTRICT im, const int* MF_RESTRICT shift,
                            uint32_t* MF_RESTRICT noise, uint16_t* MF_RESTRICT out, const int32_t* MF_RESTRICT gain32,
                            const int32_t* MF_RESTRICT log32, int L) {
  uint64_t acc[MF_BATCH_LANES];
  int c, l;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) {
    FilterbankChannelLanes(re, im, c, acc, L);
    MF_FOR_LANES(l, L) {
      uint32_t* estimate = noise + c * L + l;
      uint32_t v = NoiseReduction1(estimate, SqrtShift1(acc[l], shift[l]), c);
      if (MF_ENABLE_PCAN) v = Pcan1(*estimate, v, gain32);
      out[c * L + l] = LogScale1(v, log32);
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Per-stage API (one frame)                                                                 */
/* ---------------------------------------------------------------------------------------- */

int MfWindow(const int16_t* samples, int16_t* fft_input) {
  int shift;
  WindowLanes(samples, fft_input, &shift, 1);
  return shift;
}

void MfFftReal16(const int16_t* fft_input, int16_t* spec_re, int16_t* spec_im) {
  FftLanes(fft_input, spec_re, spec_im, 1);
}

void MfFilterbank(const int16_t* spec_re, const int16_t* spec_im, uint64_t* channels) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) {
    uint64_t acc;
    FilterbankChannelLanes(spec_re, spec_im, c, &acc, 1);
    channels[c] = acc;
  }
}

void MfSqrtShift(const uint64_t* channels, int shift, uint32_t* signal) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) {
    /* The fast path covers every sum the filterbank can produce; other values take the
     * reference's integer root. */
    signal[c] = channels[c] < (1ull << 52) ? SqrtShift1(channels[c], shift) : (uint32_t)(Sqrt64Rounded(channels[c]) >> shift);
  }
}

void MfNoiseReduction(uint32_t* noise_estimate, const uint32_t* signal, uint32_t* reduced) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) reduced[c] = NoiseReduction1(noise_estimate + c, signal[c], c);
}

void MfPcan(const uint32_t* noise_estimate, uint32_t* signal) {
  int c;
  if (!MF_ENABLE_PCAN) return;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) signal[c] = Pcan1(noise_estimate[c], signal[c], NULL);
}

void MfLogScale(const uint32_t* signal, uint16_t* out) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) out[c] = LogScale1(signal[c], NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Per-frame API                                                                             */
/* ---------------------------------------------------------------------------------------- */

void MicroFrontendInit(MicroFrontendState* state) {
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) state->noise_estimate[c] = 0;
}

void MicroFrontendProcessWindow(MicroFrontendState* state, const int16_t* window, uint16_t* out) {
  int shift;
  WindowLanes(window, state->fft_input, &shift, 1);
  FftLanes(state->fft_input, state->spec_re, state->spec_im, 1);
  BackEndLanes(state->spec_re, state->spec_im, &shift, state->noise_estimate, out, NULL, NULL, 1);
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

/* ---------------------------------------------------------------------------------------- */
/* Batched API                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* One clip through the per-frame code, its state in and out of `noise` (NULL: fresh). */
static void ProcessOneClip(const int16_t* samples, size_t num_samples, uint32_t* noise, uint16_t* out) {
  MicroFrontendState state;
  int c;
  for (c = 0; c < MF_NUM_CHANNELS; ++c) state.noise_estimate[c] = noise ? noise[c] : 0;
  MicroFrontendProcessClip(&state, samples, num_samples, out);
  if (noise) {
    for (c = 0; c < MF_NUM_CHANNELS; ++c) noise[c] = state.noise_estimate[c];
  }
}

#if MF_BATCH_LANES > 1

#define MF_L MF_BATCH_LANES

typedef struct {
  int16_t samples[MF_WINDOW_SAMPLES * MF_L];
  int16_t fft_input[MF_FFT_SIZE * MF_L];
  int16_t re[MF_SPECTRUM_SIZE * MF_L];
  int16_t im[MF_SPECTRUM_SIZE * MF_L];
  uint32_t noise[MF_NUM_CHANNELS * MF_L];
  uint16_t out[MF_NUM_CHANNELS * MF_L];
  int shift[MF_L];
} MfLanes;

/* Runtime dispatch on x86-64 with GNU ifunc support: the group loop is compiled for baseline
 * x86-64, x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512), the loader picks one. Define
 * MF_NO_TARGET_CLONES to build one baseline version only. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__GLIBC__) && \
    !defined(MF_NO_TARGET_CLONES)
#define MF_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MF_CLONES
#endif

/* Clips first .. first + used - 1 (used <= MF_L) in lock-step; lanes past `used` repeat the last
 * clip and are dropped. */
MF_CLONES static void ProcessGroup(const int16_t* audio, size_t first, int used, size_t num_samples, size_t frames,
                                   uint32_t* noise_estimates, uint16_t* out) {
  MfLanes s;
  /* int32 copies of the PCAN and log tables, for vector gathers (separate objects from `s`, so
   * the compiler sees that the gathers cannot alias the state's stores). */
  int32_t gain_lut[MF_PCAN_GAIN_LUT_SIZE], log_lut[MF_LOG_LUT_SIZE];
  const int16_t* src[MF_L];
  size_t f;
  int c, l, i;
  for (i = 0; i < MF_PCAN_GAIN_LUT_SIZE; ++i) gain_lut[i] = kMfPcanGainLut[i];
  for (i = 0; i < MF_LOG_LUT_SIZE; ++i) log_lut[i] = kMfLogLut[i];
  for (l = 0; l < MF_L; ++l) {
    const size_t clip = first + (size_t)(l < used ? l : used - 1);
    src[l] = audio + clip * num_samples;
    for (c = 0; c < MF_NUM_CHANNELS; ++c) s.noise[c * MF_L + l] = noise_estimates ? noise_estimates[clip * MF_NUM_CHANNELS + c] : 0;
  }
  for (f = 0; f < frames; ++f) {
    /* Lanes innermost: transpose this frame's samples (lanes unrolled, so that the compiler
     * vectorizes along the samples with an interleaving store). */
    const int16_t* x[MF_L];
    for (l = 0; l < MF_L; ++l) x[l] = src[l] + f * MF_STRIDE_SAMPLES;
    for (i = 0; i < MF_WINDOW_SAMPLES; ++i) {
      MF_UNROLL_LANES for (l = 0; l < MF_L; ++l) s.samples[i * MF_L + l] = x[l][i];
    }
    WindowLanes(s.samples, s.fft_input, s.shift, MF_L);
    FftLanes(s.fft_input, s.re, s.im, MF_L);
    BackEndLanes(s.re, s.im, s.shift, s.noise, s.out, gain_lut, log_lut, MF_L);
    for (l = 0; l < used; ++l) {
      uint16_t* dst = out + ((first + (size_t)l) * frames + f) * MF_NUM_CHANNELS;
      for (c = 0; c < MF_NUM_CHANNELS; ++c) dst[c] = s.out[c * MF_L + l];
    }
  }
  if (noise_estimates) {
    for (l = 0; l < used; ++l) {
      for (c = 0; c < MF_NUM_CHANNELS; ++c) noise_estimates[(first + (size_t)l) * MF_NUM_CHANNELS + c] = s.noise[c * MF_L + l];
    }
  }
}

/* Below this many clips a group is cheaper one clip at a time than padded to MF_L lanes
 * (measured: a 32-lane group costs about 4 single clips with AVX-512, 7 with AVX2). */
#ifndef MF_MIN_GROUP
#define MF_MIN_GROUP 6
#endif

#endif /* MF_BATCH_LANES > 1 */

size_t MicroFrontendProcessBatch(const int16_t* audio, size_t num_clips, size_t num_samples, uint32_t* noise_estimates,
                                 uint16_t* out) {
  const size_t frames = MicroFrontendNumFrames(num_samples);
  size_t clip = 0;
  if (!frames) return 0;
#if MF_BATCH_LANES > 1
  for (; clip < num_clips;) {
    const size_t left = num_clips - clip;
    if (left < MF_MIN_GROUP) break;
    {
      const int used = left < MF_L ? (int)left : MF_L;
      ProcessGroup(audio, clip, used, num_samples, frames, noise_estimates, out);
      clip += (size_t)used;
    }
  }
#endif
  for (; clip < num_clips; ++clip) {
    ProcessOneClip(audio + clip * num_samples, num_samples, noise_estimates ? noise_estimates + clip * MF_NUM_CHANNELS : NULL,
                   out + clip * frames * MF_NUM_CHANNELS);
  }
  return frames;
}

size_t MicroFrontendBatchLanes(void) { return MF_BATCH_LANES; }

size_t MicroFrontendBatchStackBytes(void) {
#if MF_BATCH_LANES > 1
  return sizeof(MfLanes) + (MF_PCAN_GAIN_LUT_SIZE + MF_LOG_LUT_SIZE) * sizeof(int32_t);
#else
  return sizeof(MicroFrontendState);
#endif
}
