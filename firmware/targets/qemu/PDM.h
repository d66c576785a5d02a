// The PDM library's interface (the part the sketch uses), played from a recording
// (recording.h, pdm.cpp): the sketch's audio_provider.cpp compiles and runs unchanged.
#ifndef KWS_QEMU_PDM_H_
#define KWS_QEMU_PDM_H_

#include "Arduino.h"

class PDMClass {
 public:
  int begin(int channels, int sample_rate);  // 1 if the recording matches, 0 otherwise
  void end() {}
  void onReceive(void (*function)()) { on_receive_ = function; }
  int available();                       // bytes of the current chunk not yet read
  int read(void* buffer, size_t size);   // copies up to size bytes of it
  void setGain(int) {}

 private:
  friend int DeliverAudio();
  void (*on_receive_)() = nullptr;
  bool started_ = false;
};

extern PDMClass PDM;

#endif  // KWS_QEMU_PDM_H_
