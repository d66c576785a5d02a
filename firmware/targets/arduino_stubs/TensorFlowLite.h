// STAND-IN for the Arduino_TensorFlowLite library's TensorFlowLite.h, for `make sketch-check`
// only. The real header is empty too: the .ino includes it so that the Arduino IDE adds the
// library (the TFLM sources, here the cmsis-nn tree) to the build.
#ifndef KWS_STUB_TENSORFLOWLITE_H_
#define KWS_STUB_TENSORFLOWLITE_H_
#endif  // KWS_STUB_TENSORFLOWLITE_H_
