/* (f) Timing seen from inside the guest, with rdtsc:
 * N root F0 (query functions) _DSM calls through the doorbell, then N stores to
 * DIMM 0's first flush hint (nothing dirty after the first). Then, each store
 * timed on its own (rdtsc right before and after, summed):
 *  - N stores to an MMIO page no device claims (UNUSED_MMIO): the bare exit
 *    round trip, what every flush pays before the VMM does any work;
 *  - N flush-hint stores, each after dirtying one page of DIMM 0's window
 *    (DIRTY_OFFSET; the dirtying store is outside the timed pair), so every
 *    fdatasync has one page to write, like the host's baseline.
 * Reports N, then the TSC ticks of the four measurements (two words each). */
#include "vnvdimm.h"
#define N 200
/* In the MMIO hole between the GED and the flush hint area: no device, no memslot. */
#define UNUSED_MMIO (DOORBELL + 0x80000)
#define DIRTY_OFFSET 0x1000
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

	/* %rsi still holds the flush hint address. */
	mov $UNUSED_MMIO, %edi
	call timed_stores
	call report64

	push %rsi
	mov $NFIT_SPA, %edx
	call find_struct
	pop %rsi
	test %rax, %rax
	jz 8f
	mov 32(%rax), %r8
	add $DIRTY_OFFSET, %r8
	mov %rsi, %rdi
	call timed_stores
	call report64
	EXIT 0
8:	EXIT FAIL_NO_SPA
9:	EXIT FAIL_NO_FLUSH

/* timed_stores: N times { store to (%r8) if %r8 != 0; rdtsc; store to (%rdi);
 * rdtsc }, returns the summed ticks of the timed pairs in %rax. Call with %r8 = 0
 * for no dirtying store. Clobbers %rcx, %rdx, %r10, %r11, %rbp. */
timed_stores:
	xor %r10d, %r10d
	mov $N, %r11d
1:	test %r8, %r8
	jz 2f
	mov %r11, (%r8)			/* dirties the page: the next flush has work */
2:	lfence
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	mov %rax, %rbp
	movq $1, (%rdi)			/* traps to the VMM */
	rdtsc
	shl $32, %rdx
	or %rdx, %rax
	sub %rbp, %rax
	add %rax, %r10
	dec %r11d
	jnz 1b
	mov %r10, %rax
	ret
#include "lib.S"
