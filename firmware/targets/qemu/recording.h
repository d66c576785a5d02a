// The QEMU board's microphone: a 16 kHz mono int16 recording (WAV or raw) read from the host
// through semihosting, played through the PDM library's interface (PDM.h here) so that the
// sketch's own audio_provider.cpp, ring buffer and callback included, runs unchanged.
#ifndef KWS_QEMU_RECORDING_H_
#define KWS_QEMU_RECORDING_H_

// Opens the recording (before SetupAudio / PDM.begin). A WAV must be PCM 16-bit mono at
// kAudioSampleFrequency; anything not starting with "RIFF" is taken as raw little-endian int16.
// Returns nullptr when ready, otherwise what is wrong.
const char* OpenRecording(const char* path);

// One PDM interrupt: the next chunk of the recording, handed to the onReceive callback. Returns
// the samples delivered, 0 at the end of the recording (or before PDM.begin).
int DeliverAudio();

#endif  // KWS_QEMU_RECORDING_H_
