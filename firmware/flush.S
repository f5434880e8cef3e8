/* (d) Stores a quadword at DIMM 0's SPA base + 0x1000, then stores to DIMM 0's
 * first flush hint; reports the hint address (two words). The VMM's flush count
 * for DIMM 0 rises by one and the quadword is durable in the backing file. */
#include "vnvdimm.h"
#define STAMP 0x4853554c46214e56
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz 8f
	mov 32(%rax), %rdi
	movabs $STAMP, %rax
	mov %rax, 0x1000(%rdi)
	mov $NFIT_FLUSH, %edx
	call find_struct
	test %rax, %rax
	jz 9f
	mov 16(%rax), %rsi
	movq $1, (%rsi)			/* traps: fdatasync before we continue */
	mov %rsi, %rax
	call report64
	EXIT 0
8:	EXIT FAIL_NO_SPA
9:	EXIT FAIL_NO_FLUSH
#include "lib.S"
