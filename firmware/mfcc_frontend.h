/* The MFCC front end (kws.audio.mfcc.MFCCFeatures, torchaudio's MFCC) in plain C99 float.
 *
 * All constants (periodic Hann window, FFT bit-reverse order and twiddles, real-split twiddles,
 * mel filterbank, DCT-II matrix) come from mfcc_frontend_tables.h, which `python -m kws export`
 * writes into the export folder for the model's own settings (kws.export.frontend_tables), from
 * the same torchaudio functions the Python front end uses; put that folder on the include path.
 *
 * Per frame: int16 / 32768, Hann window, zero-pad to MFCC_FFT_SIZE, real FFT (iterative radix-2
 * complex FFT of MFCC_NCFFT points + real split), power |X|^2, mel filterbank (sparse),
 * log(mel + 1e-6), DCT-II (ortho). No state carried across frames; no heap; scratch lives in
 * MfccFrontendState. Matches torch within float32 rounding (tests/firmware/test_mfcc.py).
 */
#ifndef KWS_FIRMWARE_MFCC_FRONTEND_H_
#define KWS_FIRMWARE_MFCC_FRONTEND_H_

#include <stddef.h>
#include <stdint.h>

#include "mfcc_frontend_tables.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  /* Scratch for one frame (contents are meaningless between calls). */
  float re[MFCC_NCFFT];
  float im[MFCC_NCFFT];
  float power[MFCC_NUM_BINS];
  float log_mel[MFCC_NUM_MELS];
} MfccFrontendState;

/* One frame: `window` holds MFCC_WINDOW_SAMPLES int16 samples (the caller advances by
 * MFCC_STRIDE_SAMPLES between calls); writes MFCC_NUM_COEFFS floats to `out`. */
void MfccFrontendProcessWindow(MfccFrontendState* state, const int16_t* window, float* out);

/* Number of frames of a clip of `num_samples` samples: 1 + (num_samples - window) / stride, or 0
 * if shorter than one window. */
size_t MfccFrontendNumFrames(size_t num_samples);

/* A whole clip: `out` receives MfccFrontendNumFrames(num_samples) * MFCC_NUM_COEFFS floats,
 * frame-major. Returns the number of frames. */
size_t MfccFrontendProcessClip(MfccFrontendState* state, const int16_t* samples, size_t num_samples, float* out);

#ifdef __cplusplus
}
#endif

#endif /* KWS_FIRMWARE_MFCC_FRONTEND_H_ */
