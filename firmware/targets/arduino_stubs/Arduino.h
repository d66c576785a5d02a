// STAND-IN for the Arduino core's Arduino.h, for `make sketch-check` only: declarations of just
// what the sketch uses (Serial, time, pins), shaped as ArduinoCore-API / the Nano 33 BLE variant
// declare them, so the sketch's files compile for the Cortex-M4F without the core. Never linked
// or run; the real build uses the Arduino mbed core (arduino:mbed_nano).
#ifndef KWS_STUB_ARDUINO_H_
#define KWS_STUB_ARDUINO_H_

#include <stddef.h>
#include <stdint.h>

typedef uint8_t pin_size_t;
typedef enum { LOW = 0, HIGH = 1 } PinStatus;
typedef enum { INPUT = 0, OUTPUT = 1 } PinMode;
#define LED_BUILTIN (13u)
#define LEDR (22u)
#define LEDG (23u)
#define LEDB (24u)
#define DEC 10

void pinMode(pin_size_t pin, PinMode mode);
void digitalWrite(pin_size_t pin, PinStatus value);
unsigned long millis();
unsigned long micros();
void delay(unsigned long ms);

// Print's overloads as the core declares them (overload resolution matters, not the output).
class Print {
 public:
  size_t print(const char*);
  size_t print(char);
  size_t print(int, int = DEC);
  size_t print(unsigned int, int = DEC);
  size_t print(long, int = DEC);
  size_t print(unsigned long, int = DEC);
  size_t print(double, int = 2);
  size_t println(const char*);
  size_t println(int, int = DEC);
  size_t println(unsigned int, int = DEC);
  size_t println(long, int = DEC);
  size_t println(unsigned long, int = DEC);
  size_t println(double, int = 2);
  size_t println();
};

class SerialUSB : public Print {
 public:
  void begin(unsigned long baud);
  operator bool();
};
extern SerialUSB Serial;

#endif  // KWS_STUB_ARDUINO_H_
