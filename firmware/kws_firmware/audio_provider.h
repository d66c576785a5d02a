// Audio provider (Arduino only): the PDM microphone of the Nano 33 BLE Sense, 16 kHz mono int16,
// written by the PDM callback into a ring buffer; samples are addressed by absolute index since
// capture started (a 32-bit counter: wraps after about 74 hours).
#ifndef KWS_AUDIO_PROVIDER_H_
#define KWS_AUDIO_PROVIDER_H_

#include <stdint.h>

constexpr int kAudioRingSamples = 8192;  // 512 ms at 16 kHz

// Starts the microphone. False if PDM.begin fails.
bool SetupAudio();

// Samples captured since SetupAudio; the oldest still in the ring buffer.
int64_t LatestAudioSampleCount();
int64_t OldestAudioSample();

// Milliseconds of audio captured since SetupAudio (micro_speech's LatestAudioTimestamp).
int32_t LatestAudioTimestamp();

// micro_speech-style access: `duration_ms` of audio from `start_ms` copied into `out` (room for
// duration_ms * 16 samples); *count receives the number of samples. False if not in the buffer.
bool GetAudioSamples(int32_t start_ms, int32_t duration_ms, int* count, int16_t* out);

// The AudioReader the feature provider uses (context unused): `count` samples from absolute
// index `first`. False if they have not arrived or were overwritten while being copied.
bool ReadAudio(void* context, int64_t first, int count, int16_t* out);

#endif  // KWS_AUDIO_PROVIDER_H_
