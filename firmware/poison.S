/* (e) Poison consumption. Installs a #MC handler, then loads the quadword at DIMM 0's
 * SPA base + 0x3000 (page 3, which the check poisons before the run). The page is out
 * of the memslots, so the load exits; the VMM answers it with an action-required
 * machine check for that address, raised as #MC when the vCPU resumes.
 * Reports: the address loaded (2 words); then, from the #MC handler, MC9_ADDR,
 * MC9_STATUS and MCG_STATUS (2 words each) and exit 0. Without a #MC the value read
 * is reported and the program exits FAIL_NO_MC. */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	call setup_mc_idt
	call find_nfit
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz 9f
	mov 32(%rax), %rsi
	add $0x3000, %rsi
	mov %rsi, %rax
	call report64
	mov (%rsi), %rax		/* poisoned: exits to the VMM, #MC follows */
	call report64
	EXIT FAIL_NO_MC
9:	EXIT FAIL_NO_SPA

mc_handler:
	mov $MSR_MC9_ADDR, %ecx
	call rdmsr64
	call report64
	mov $MSR_MC9_STATUS, %ecx
	call rdmsr64
	call report64
	mov $MSR_MCG_STATUS, %ecx
	call rdmsr64
	call report64
	EXIT 0
#include "lib.S"
#include "mc.S"
