/* (f) Timing seen from inside the guest, with rdtsc:
 * N root F0 (query functions) _DSM calls through the doorbell, then N stores to
 * DIMM 0's first flush hint. Reports N, then the TSC ticks of each loop (two
 * words each). */
#include "vnvdimm.h"
#define N 200
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $N, %eax
	REPORT32
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	lea root_uuid(%rip), %r15
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %rbp
	mov $N, %r11d			/* dsm_call leaves %r11 and %rbx alone */
1:	call dsm_call
	dec %r11d
	jnz 1b
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %rbp, %rax
	call report64

	mov $NFIT_FLUSH, %edx
	call find_struct
	test %rax, %rax
	jz 9f
	mov 16(%rax), %rsi
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %rbp
	mov $N, %ecx
2:	movq $1, (%rsi)
	dec %ecx
	jnz 2b
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %rbp, %rax
	call report64
	EXIT 0
9:	EXIT FAIL_NO_FLUSH
#include "lib.S"
