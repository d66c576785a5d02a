// The QEMU board layer's services beyond the C library: semihosting's command line, and how much
// stack and heap the run used (the stack is painted at reset; the heap is newlib's, used only by
// semihosting stdio here).
#ifndef KWS_QEMU_BOARD_H_
#define KWS_QEMU_BOARD_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The command line QEMU was given (-semihosting-config ...,arg=a,arg=b) as one string with
// spaces, copied into buf. Returns its length, or -1.
int BoardCommandLine(char* buf, int size);

size_t BoardStackSize(void);
size_t BoardStackUsedBytes(void);  // high-water mark since reset
size_t BoardHeapUsedBytes(void);

#ifdef __cplusplus
}
#endif

#endif  // KWS_QEMU_BOARD_H_
