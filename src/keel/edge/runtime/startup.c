/* Minimal Cortex-M startup for keel.edge's size probes and QEMU runs (mps2-an385/an386).
 * Why our own: rdimon's crt0 does not copy .data from flash and moves SP to QEMU's heap info
 * (see shared/recipes/qemu-cortex-m.md). */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);

void _init(void) {}
void _fini(void) {}

/* A fault ends the emulation with exit code 250 through the raw SYS_EXIT_EXTENDED call:
 * newlib's _exit() could report 0 when the fault comes before semihosting is probed. */
void Fault_Handler(void) {
    static volatile uint32_t block[2] = {0x20026u, 250u}; /* ADP_Stopped_ApplicationExit, code */
    register uint32_t r0 __asm__("r0") = 0x20u;
    register volatile uint32_t *r1 __asm__("r1") = block;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler,
    Fault_Handler, 0, Fault_Handler, Fault_Handler,
};

void Reset_Handler(void) {
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#ifdef __ARM_FP
    /* Without this, the first FP instruction raises a NOCP UsageFault. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    initialise_monitor_handles();
    exit(main());
}
