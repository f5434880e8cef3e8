/* (e) Reads the quadword at DIMM 0's SPA base + 0x3000 (page 3, which the test
 * poisons first) and reports the address, then the value read (two words each).
 * On a host that can deliver machine checks the guest would take #MC here and
 * never report the value; on one that cannot, the VMM logs the machine check it
 * issued and the run ends in KVM_EXIT_SHUTDOWN or continues, per the VMM. */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz 9f
	mov 32(%rax), %rsi
	add $0x3000, %rsi
	mov %rsi, %rax
	call report64
	mov (%rsi), %rax		/* poisoned: exits to the VMM */
	call report64
	EXIT 0
9:	EXIT FAIL_NO_SPA
#include "lib.S"
