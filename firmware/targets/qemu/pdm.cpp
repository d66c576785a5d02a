// PDM on QEMU: the recording, chunk by chunk, through the sketch's own PDM callback.
#include <stdio.h>
#include <string.h>

#include "PDM.h"
#include "model_settings.h"
#include "recording.h"

PDMClass PDM;

namespace {

FILE* g_file = nullptr;
long g_remaining = -1;    // samples left in a WAV's data chunk; -1: raw, read to the end
int16_t g_chunk[512];     // the chunk being delivered
int g_chunk_bytes = 0, g_read_bytes = 0;
uint32_t g_lcg = 12345;

uint32_t Le32(const unsigned char* b) { return b[0] | b[1] << 8 | b[2] << 16 | static_cast<uint32_t>(b[3]) << 24; }
uint16_t Le16(const unsigned char* b) { return static_cast<uint16_t>(b[0] | b[1] << 8); }

// Walks the RIFF chunks up to "data", checking "fmt " on the way; a file that is not RIFF is raw.
const char* SkipWavHeader() {
  unsigned char header[12], chunk[8], fmt[16];
  if (fread(header, 1, 12, g_file) != 12 || memcmp(header, "RIFF", 4) != 0 || memcmp(header + 8, "WAVE", 4) != 0) {
    rewind(g_file);
    return nullptr;
  }
  bool have_fmt = false;
  while (fread(chunk, 1, 8, g_file) == 8) {
    const uint32_t size = Le32(chunk + 4), padded = (size + 1) & ~1u;  // chunks are padded to even sizes
    if (memcmp(chunk, "data", 4) == 0) {
      if (!have_fmt) return "WAV: no fmt chunk before the data";
      g_remaining = size / 2;
      return nullptr;
    }
    if (memcmp(chunk, "fmt ", 4) == 0 && size >= 16) {
      if (fread(fmt, 1, 16, g_file) != 16) break;
      if (Le16(fmt) != 1 || Le16(fmt + 2) != 1 || Le32(fmt + 4) != static_cast<uint32_t>(kAudioSampleFrequency) ||
          Le16(fmt + 14) != 16) {
        return "WAV: need PCM, mono, 16-bit, at kAudioSampleFrequency";
      }
      have_fmt = true;
      fseek(g_file, padded - 16, SEEK_CUR);
    } else {
      fseek(g_file, padded, SEEK_CUR);
    }
  }
  return "WAV: no data chunk";
}

}  // namespace

const char* OpenRecording(const char* path) {
  g_file = fopen(path, "rb");
  if (!g_file) return "cannot open the recording";
  return SkipWavHeader();
}

int PDMClass::begin(int channels, int sample_rate) {
  started_ = g_file && channels == 1 && sample_rate == kAudioSampleFrequency;
  return started_ ? 1 : 0;
}

int PDMClass::available() { return g_chunk_bytes - g_read_bytes; }

int PDMClass::read(void* buffer, size_t size) {
  const int n = static_cast<int>(size) < available() ? static_cast<int>(size) : available();
  memcpy(buffer, reinterpret_cast<const char*>(g_chunk) + g_read_bytes, n);
  g_read_bytes += n;
  return n;
}

// The board's PDM callbacks bring 256 samples each; here 1..512 vary (the sketch's callback
// buffer holds 512), so no result can depend on how chunks fall against frames.
int DeliverAudio() {
  if (!PDM.started_ || !PDM.on_receive_) return 0;
  g_lcg = g_lcg * 1103515245u + 12345u;
  long n = 1 + (g_lcg >> 16) % 512;
  if (g_remaining >= 0 && n > g_remaining) n = g_remaining;
  n = static_cast<long>(fread(g_chunk, 2, n, g_file));  // little-endian, as the target
  if (g_remaining >= 0) g_remaining -= n;
  g_chunk_bytes = static_cast<int>(2 * n);
  g_read_bytes = 0;
  if (n > 0) PDM.on_receive_();
  return static_cast<int>(n);
}
