#include "command_responder.h"

#include <Arduino.h>
#include <string.h>

namespace {

uint32_t g_led_off_ms = 0;
bool g_led_on = false;

// The Nano 33 BLE Sense's RGB LED is active low.
void SetRgb(bool r, bool g, bool b) {
  digitalWrite(LEDR, r ? LOW : HIGH);
  digitalWrite(LEDG, g ? LOW : HIGH);
  digitalWrite(LEDB, b ? LOW : HIGH);
}

}  // namespace

void SetupResponder() {
  pinMode(LED_BUILTIN, OUTPUT);
  pinMode(LEDR, OUTPUT);
  pinMode(LEDG, OUTPUT);
  pinMode(LEDB, OUTPUT);
  SetRgb(false, false, false);
}

void RespondToCommand(void*, const Detection& d) {
  // Same text as kws.streams.recognize.Detection / python -m kws listen.
  Serial.print("Heard ");
  Serial.print(d.label);
  Serial.print(" (");
  Serial.print(d.score, 2);
  Serial.print(") @");
  Serial.print(d.time_ms);
  Serial.println("ms");
  // yes: green, no: red, any other command: blue.
  if (strcmp(d.label, "yes") == 0) SetRgb(false, true, false);
  else if (strcmp(d.label, "no") == 0) SetRgb(true, false, false);
  else SetRgb(false, false, true);
  digitalWrite(LED_BUILTIN, HIGH);
  g_led_on = true;
  g_led_off_ms = millis() + 1000;
}

void UpdateResponder(uint32_t now_ms) {
  if (g_led_on && static_cast<int32_t>(now_ms - g_led_off_ms) >= 0) {
    SetRgb(false, false, false);
    digitalWrite(LED_BUILTIN, LOW);
    g_led_on = false;
  }
}
