// STAND-IN for the Arduino PDM library's PDM.h (Nano 33 BLE), for `make sketch-check` only:
// the declarations the sketch uses, as the library declares them. Never linked or run.
#ifndef KWS_STUB_PDM_H_
#define KWS_STUB_PDM_H_

#include "Arduino.h"

class PDMClass {
 public:
  int begin(int channels, int sample_rate);
  void end();
  int available();
  int read(void* buffer, size_t size);
  void onReceive(void (*function)(void));
  void setGain(int gain);
  void setBufferSize(int size);
};
extern PDMClass PDM;

#endif  // KWS_STUB_PDM_H_
