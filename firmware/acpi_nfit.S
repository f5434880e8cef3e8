/* (a) Finds the RSDP, follows the XSDT to the NFIT and reports:
 * XSDT address, NFIT address, DIMM 0's SPA base and length, its first flush hint
 * address (each as two words, low then high). */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $RSDP_ADDR, %esi
	mov 24(%rsi), %rax
	call report64
	mov %rbx, %rax
	call report64
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz 1f
	mov %rax, %r10
	mov 32(%r10), %rax
	call report64
	mov 40(%r10), %rax
	call report64
	mov $NFIT_FLUSH, %edx
	call find_struct
	test %rax, %rax
	jz 2f
	mov 16(%rax), %rax
	call report64
	EXIT 0
1:	EXIT FAIL_NO_SPA
2:	EXIT FAIL_NO_FLUSH
#include "lib.S"
