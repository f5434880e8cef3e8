/* Reports a panic through the pvpanic port the DSDT describes (QEMU0001 at 0x505), as
 * Linux's pvpanic driver does from its panic notifier: reads the supported events,
 * writes PANICKED. The run must end there as a crash; if the VMM ignored the write the
 * program exits with code 7 instead. */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	mov $0x505, %dx
	inb %dx, %al			/* supported events */
	and $1, %al			/* PANICKED */
	outb %al, %dx
	EXIT 7
