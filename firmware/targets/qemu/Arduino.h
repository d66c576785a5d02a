// The QEMU board's Arduino.h: only what kws_firmware/audio_provider.cpp uses (nothing but the
// fixed-width types, through PDM.h). Not a stand-in for the core: Serial and the LEDs are
// replaced by main.cpp, not emulated.
#ifndef KWS_QEMU_ARDUINO_H_
#define KWS_QEMU_ARDUINO_H_

#include <stddef.h>
#include <stdint.h>

#endif  // KWS_QEMU_ARDUINO_H_
