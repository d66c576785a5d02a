// PDM ring buffer. Only this file and the other Arduino-only files need the board core.
#include "audio_provider.h"

#include <Arduino.h>
#include <PDM.h>

#include "model_settings.h"

namespace {

int16_t g_ring[kAudioRingSamples];
int16_t g_pdm_buffer[512];               // one PDM callback's worth (256 samples by default)
volatile uint32_t g_written = 0;        // samples captured; updated after the copy

void OnPdmData() {
  int bytes = PDM.available();
  if (bytes > static_cast<int>(sizeof(g_pdm_buffer))) bytes = sizeof(g_pdm_buffer);
  PDM.read(g_pdm_buffer, bytes);
  const int n = bytes / 2;
  uint32_t w = g_written;
  for (int i = 0; i < n; ++i) g_ring[(w + i) % kAudioRingSamples] = g_pdm_buffer[i];
  g_written = w + n;  // 32-bit store: atomic on Cortex-M4
}

}  // namespace

bool SetupAudio() {
  PDM.onReceive(OnPdmData);
  // Default gain. The model was trained on Speech Commands levels: adjust with PDM.setGain if
  // features look too quiet or saturated.
  return PDM.begin(1, kAudioSampleFrequency) != 0;
}

int64_t LatestAudioSampleCount() { return g_written; }

int64_t OldestAudioSample() {
  const int64_t w = g_written;
  return w > kAudioRingSamples ? w - kAudioRingSamples : 0;
}

int32_t LatestAudioTimestamp() { return static_cast<int32_t>(LatestAudioSampleCount() * 1000 / kAudioSampleFrequency); }

bool ReadAudio(void*, int64_t first, int count, int16_t* out) {
  if (first < 0 || first + count > LatestAudioSampleCount() || first < OldestAudioSample()) return false;
  for (int i = 0; i < count; ++i) out[i] = g_ring[(first + i) % kAudioRingSamples];
  // The callback may have overwritten the start while we copied.
  return first >= OldestAudioSample();
}

bool GetAudioSamples(int32_t start_ms, int32_t duration_ms, int* count, int16_t* out) {
  const int64_t first = static_cast<int64_t>(start_ms) * kAudioSampleFrequency / 1000;
  const int n = duration_ms * kAudioSampleFrequency / 1000;
  *count = n;
  return ReadAudio(nullptr, first, n, out);
}
