/* The TFLM micro front end in plain C99, bit-exact with kws/audio/micro_frontend.py (MicroFrontend).
 *
 * Written from the Python reference, not from TensorFlow's sources. All constants (window, FFT
 * plan and twiddles, filterbank, noise smoothing, PCAN gain table, log table) come from
 * micro_frontend_tables.h, generated for one MicroFrontendConfig (kws.export.frontend_tables):
 * `python -m kws export` writes the model's into its export folder; put that folder on the
 * include path (firmware/default_tables/ holds the default config's, for setup.py).
 *
 * Per frame: Q12 Hann window, scale up to the FFT's 16 bits, 16-bit KISS kiss_fftr (radix-4/2
 * stages, FIXDIV and rounding per stage, real-split post pass), energy, 12-bit mel filterbank,
 * rounded 64-bit square root, noise reduction (the only state carried across frames), PCAN,
 * Q16 log. No heap, no global mutable state: every function is reentrant and thread-safe as long
 * as two threads never share a MicroFrontendState or an output/state buffer.
 *
 * One source for the board and for the host:
 * - the board (and any single-stream user) calls MicroFrontendProcessWindow per frame;
 * - training on a host calls MicroFrontendProcessBatch on many clips at once. It runs the same
 *   stage code on MF_BATCH_LANES clips in lock-step (lane-innermost buffers, so the compiler
 *   vectorizes across clips) and gives the same values, bit for bit, as
 *   MicroFrontendProcessClip on each clip.
 * - each DSP stage is also callable alone on one frame (MfWindow .. MfLogScale below), so a test
 *   can find a mismatch in one stage against the reference.
 *
 * Host build (a shared library for ctypes; portable, no -march):
 *   gcc -std=c99 -O3 -fPIC -shared -I TABLES_DIR -I firmware firmware/micro_frontend.c -o libmf.so
 * -O3 (or -O2 -ftree-vectorize -fvect-cost-model=dynamic) is needed for the batch code to be
 * vectorized. On x86-64 Linux (glibc) the batch kernel is compiled for baseline x86-64,
 * x86-64-v3 (AVX2) and x86-64-v4 (AVX-512) and the loader picks one for the CPU it runs on
 * (MF_NO_TARGET_CLONES disables that); other 64-bit targets (aarch64: NEON) get one build.
 */
#ifndef KWS_FIRMWARE_MICRO_FRONTEND_H_
#define KWS_FIRMWARE_MICRO_FRONTEND_H_

#include <stddef.h>
#include <stdint.h>

#include "micro_frontend_tables.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The per-frame state (2,212 bytes with the default tables; it was 3,236 before the FFT worked
 * in place). */
typedef struct {
  /* Carried across frames: the per-channel noise estimate. */
  uint32_t noise_estimate[MF_NUM_CHANNELS];
  /* Scratch for one frame (contents are meaningless between calls): the windowed, scaled FFT
   * input, then the FFT's work buffers, which end up holding the spectrum (in place). */
  int16_t fft_input[MF_FFT_SIZE];
  int16_t spec_re[MF_SPECTRUM_SIZE];
  int16_t spec_im[MF_SPECTRUM_SIZE];
} MicroFrontendState;

/* Reset the noise estimate: the next frame starts like the first frame of a clip. */
void MicroFrontendInit(MicroFrontendState* state);

/* One frame: `window` holds MF_WINDOW_SAMPLES int16 samples (the caller advances by
 * MF_STRIDE_SAMPLES between calls); writes MF_NUM_CHANNELS values to `out` and updates the
 * noise estimate. */
void MicroFrontendProcessWindow(MicroFrontendState* state, const int16_t* window, uint16_t* out);

/* Number of frames of a clip of `num_samples` samples: 1 + (num_samples - window) / stride, or 0
 * if shorter than one window. */
size_t MicroFrontendNumFrames(size_t num_samples);

/* A whole clip, continuing from the state's current noise estimate (call MicroFrontendInit first
 * for a fresh clip, as MicroFrontend does per clip). `out` receives
 * MicroFrontendNumFrames(num_samples) * MF_NUM_CHANNELS values, frame-major. Returns the number
 * of frames. */
size_t MicroFrontendProcessClip(MicroFrontendState* state, const int16_t* samples, size_t num_samples, uint16_t* out);

/* ---------------------------------------------------------------------------------------- */
/* Batched API (host training)                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Clips processed in lock-step by MicroFrontendProcessBatch (the vector width of the batch
 * code, in clips). 32 on 64-bit hosts, 1 elsewhere (the board: the batch function then runs
 * the clips one after another through the per-frame code). Override with -DMF_BATCH_LANES=N. */
#ifndef MF_BATCH_LANES
#if defined(__x86_64__) || defined(_M_X64) || defined(__aarch64__) || defined(_M_ARM64) || defined(__powerpc64__) || \
    (defined(__riscv) && __riscv_xlen == 64)
#define MF_BATCH_LANES 32
#else
#define MF_BATCH_LANES 1
#endif
#endif

/* `num_clips` clips of `num_samples` int16 samples each, contiguous (`audio[clip * num_samples
 * + i]`). Each clip starts from its own noise estimate and is processed exactly as
 * MicroFrontendProcessClip processes it from a state holding that estimate.
 *
 * noise_estimates: [num_clips][MF_NUM_CHANNELS]. In: the estimate each clip starts from (zeros
 *   for a fresh clip, as MicroFrontendInit; or the estimate a stream had at the clip's first
 *   sample). Out: overwritten with each clip's estimate after its last frame (the state to carry
 *   into the audio that follows). NULL: every clip starts fresh and the final estimates are
 *   dropped.
 * out: [num_clips][MicroFrontendNumFrames(num_samples)][MF_NUM_CHANNELS].
 * Returns the number of frames per clip (0 if num_samples < MF_WINDOW_SAMPLES: nothing is
 * written, the estimates are left as they are).
 *
 * Thread safety: no global mutable state and no heap; all scratch (about
 * MicroFrontendBatchStackBytes() bytes) is on the caller's stack. Several threads may call it at
 * once on disjoint parts of a batch (split `audio`, `noise_estimates` and `out` by clips; the
 * results do not depend on how the batch is split). */
size_t MicroFrontendProcessBatch(const int16_t* audio, size_t num_clips, size_t num_samples, uint32_t* noise_estimates,
                                 uint16_t* out);

/* MF_BATCH_LANES of this build: split batches into chunks of a multiple of it (a chunk's last
 * partial group costs a full group, unless it is only a few clips, which run one by one). */
size_t MicroFrontendBatchLanes(void);

/* Bytes of stack scratch MicroFrontendProcessBatch uses for its lane buffers (a lower bound on
 * its stack need; add a few KB for the rest). About 105 KB with 32 lanes. */
size_t MicroFrontendBatchStackBytes(void);

/* ---------------------------------------------------------------------------------------- */
/* The stages of one frame, callable alone (MicroFrontendProcessWindow is exactly these, in   */
/* order). Each is the C twin of one function of kws/audio/micro_functional.py.      */
/* ---------------------------------------------------------------------------------------- */

/* Q12 Hann window of MF_WINDOW_SAMPLES samples, then the scale-up shift that puts the frame's
 * peak at the FFT's 16 bits: fft_input[i] = wrap16(((samples[i] * window[i]) >> 12) << shift),
 * zero-padded to MF_FFT_SIZE. Returns the shift (0 .. 15). */
int MfWindow(const int16_t* samples, int16_t* fft_input);

/* 16-bit fixed-point KISS kiss_fftr of MF_FFT_SIZE real samples: spec_re/spec_im receive bins
 * 0 .. MF_NCFFT (MF_SPECTRUM_SIZE values each; they are also the FFT's work buffers). */
void MfFftReal16(const int16_t* fft_input, int16_t* spec_re, int16_t* spec_im);

/* Energy re^2 + im^2 of each bin, then the 12-bit mel filterbank: MF_NUM_CHANNELS 64-bit sums. */
void MfFilterbank(const int16_t* spec_re, const int16_t* spec_im, uint64_t* channels);

/* Square root rounded to nearest (saturating at 0xFFFF below 2^32), shifted back down by the
 * window stage's `shift`. */
void MfSqrtShift(const uint64_t* channels, int shift, uint32_t* signal);

/* Noise reduction: updates the per-channel noise estimate (the state) with `signal` and writes
 * the signal less the estimate, floored at MF_MIN_SIGNAL_REMAINING of the signal, to `reduced`
 * (which may be `signal`). */
void MfNoiseReduction(uint32_t* noise_estimate, const uint32_t* signal, uint32_t* reduced);

/* PCAN gain control, in place on `signal`, with the gain of the (updated) noise estimate. A
 * no-op when the tables disable PCAN. */
void MfPcan(const uint32_t* noise_estimate, uint32_t* signal);

/* Q16 log scale (or the 16-bit clamp when the tables disable the log): the front end's
 * output. */
void MfLogScale(const uint32_t* signal, uint16_t* out);

#ifdef __cplusplus
}
#endif

#endif /* KWS_FIRMWARE_MICRO_FRONTEND_H_ */
