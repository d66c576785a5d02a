// Command responder (Arduino only): "Heard yes (0.93) @1234ms" over Serial, and the LEDs.
#ifndef KWS_COMMAND_RESPONDER_H_
#define KWS_COMMAND_RESPONDER_H_

#include "recognize_commands.h"

void SetupResponder();
void RespondToCommand(void* context, const Detection& detection);
// Call every loop: turns the LEDs off some time after a detection.
void UpdateResponder(uint32_t now_ms);

#endif  // KWS_COMMAND_RESPONDER_H_
