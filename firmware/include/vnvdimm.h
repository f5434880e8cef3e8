/* Shared definitions for vnvdimm's bare-metal guest programs.
 * The VMM enters each program at its first byte, loaded at 1 MiB, in 64-bit long
 * mode with identity-mapped 2 MiB pages, interrupts off and a stack below 0x9F000.
 * The fixed addresses below are the machine's (crates/machine/src/memory_map.rs);
 * everything configuration-dependent (SPA bases, flush hints, handles) is read
 * from the NFIT, as an OS would. */

#define RSDP_ADDR      0xE0000
#define MAILBOX        0xD0000
#define DOORBELL       0xC0000000
#define REPORT_PORT    0x510
#define EXIT_PORT      0x514
/* Host commands to an idling program (crates/vmm/src/command_port.rs). */
#define CMD_PORT       0x518
#define CMD_ARG_LO     0x51C
#define CMD_ARG_HI     0x520

/* Machine-check MSRs: bank 9 is the one the VMM reports memory errors in. */
#define MSR_MCG_STATUS 0x17A
#define MSR_MC9_STATUS 0x425
#define MSR_MC9_ADDR   0x426

/* Mailbox ABI (crates/nvdimm-model/src/mailbox.rs). */
#define MB_HANDLE      0x00
#define MB_REVISION    0x04
#define MB_FUNCTION    0x08
#define MB_INPUT_LEN   0x0C
#define MB_UUID        0x10
#define MB_OUTPUT_LEN  0x20
#define MB_COMPLETION  0x24
#define MB_INPUT       0x1000
#define MB_OUTPUT      0x2000

/* NFIT sub-structure types. */
#define NFIT_SPA       0
#define NFIT_MEMDEV    1
#define NFIT_FLUSH     6

/* Exit codes: 0 = every step ran; others name the step that failed. */
#define FAIL_RSDP      10
#define FAIL_NFIT      11
#define FAIL_NO_SPA    12
#define FAIL_NO_FLUSH  13
#define FAIL_NO_MEMDEV 14
#define FAIL_DSM       20
#define FAIL_NO_MC     30

.macro EXIT code
	mov $\code, %al
	mov $EXIT_PORT, %dx
	out %al, %dx
1:	hlt
	jmp 1b
.endm

/* Reports %eax (clobbers %edx). */
.macro REPORT32
	mov $REPORT_PORT, %dx
	out %eax, %dx
.endm
