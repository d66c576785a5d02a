// Reset, faults and the C runtime start for QEMU mps2-an386 with newlib and semihosting
// (--specs=rdimon.specs -nostartfiles: newlib's own rdimon crt0 hung in QEMU 7.2).
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "board.h"

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint32_t __stack_start[], __stack_end[];
extern char __heap_start[], __heap_end[];

extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(void);

#define CPACR (*(volatile uint32_t*)0xE000ED88u)
#define STACK_PAINT 0xA5A5A5A5u

// -nostartfiles leaves out crti/crtn, which __libc_init_array and exit expect.
void _init(void) {}
void _fini(void) {}

static int Semihost(int operation, void* argument) {
  register int r0 __asm__("r0") = operation;
  register void* r1 __asm__("r1") = argument;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void Reset_Handler(void) {
  CPACR |= 0xFu << 20;  // CP10 and CP11 full access: the FPU, before any float instruction
  __asm__ volatile("dsb\n\tisb");
  for (uint32_t *src = _sidata, *dst = _sdata; dst < _edata;) *dst++ = *src++;
  for (uint32_t* dst = _sbss; dst < _ebss;) *dst++ = 0;
  // Paint the stack below this frame, for BoardStackUsedBytes.
  uint32_t* sp;
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  for (uint32_t* p = __stack_start; p < sp - 16; ++p) *p = STACK_PAINT;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

// Any fault: say so and stop QEMU with an error, rather than hang.
static void Fault(void) {
  Semihost(0x04, (void*)"kws_sim: fault (hard / memory / bus / usage)\n");  // SYS_WRITE0
  _exit(3);
}

// The Cortex-M vector table: initial stack pointer, reset, the system exceptions. No interrupt
// is enabled, so no external vectors.
__attribute__((section(".vectors"), used)) static void (*const g_vectors[16])(void) = {
    (void (*)(void))__stack_end, Reset_Handler, Fault, Fault, Fault, Fault, Fault,
    0, 0, 0, 0, Fault, Fault, 0, Fault, Fault,
};

// newlib's malloc (semihosting stdio's buffers) from __heap_start up to the end of RAM.
static char* g_heap_top = __heap_start;
void* _sbrk(ptrdiff_t increment) {
  if (increment > __heap_end - g_heap_top) {
    errno = ENOMEM;
    return (void*)-1;
  }
  char* previous = g_heap_top;
  g_heap_top += increment;
  return previous;
}

int BoardCommandLine(char* buf, int size) {
  struct { char* buf; int size; } block = {buf, size};
  return Semihost(0x15, &block) == 0 ? block.size : -1;  // SYS_GET_CMDLINE
}

size_t BoardStackSize(void) { return (size_t)((char*)__stack_end - (char*)__stack_start); }

size_t BoardStackUsedBytes(void) {
  const uint32_t* p = __stack_start;
  while (p < __stack_end && *p == STACK_PAINT) ++p;
  return (size_t)((char*)__stack_end - (char*)p);
}

size_t BoardHeapUsedBytes(void) { return (size_t)(g_heap_top - __heap_start); }
