/* (b) _DSM calls through the mailbox and doorbell, exactly as the AML makes them.
 * Reports, in order:
 *   Intel F6 (label write 16 bytes at 0): status, output length
 *   Intel F5 (label read 16 bytes at 0):  status, output length, 1 if the bytes match
 *   root F2 (Start ARS over DIMM 0's SPA range, persistent): status, output length
 *   root F3 (Query ARS status):           status, output length
 *   Intel F1 (SMART):                     status, output length, health valid flags */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $NFIT_MEMDEV, %edx
	call find_struct
	test %rax, %rax
	jz no_memdev
	mov 4(%rax), %r12d		/* DIMM 0's NFIT handle */
	mov $MAILBOX+MB_INPUT, %edi

	/* Intel F6: offset 0, length 16, pattern */
	movl $0, 0(%rdi)
	movl $16, 4(%rdi)
	mov pattern(%rip), %rax
	mov %rax, 8(%rdi)
	mov pattern+8(%rip), %rax
	mov %rax, 16(%rdi)
	mov $6, %r13d
	mov $24, %r14d
	lea intel_uuid(%rip), %r15
	call dsm_call
	call report_status_len

	/* Intel F5: offset 0, length 16 */
	mov $MAILBOX+MB_INPUT, %edi
	movl $0, 0(%rdi)
	movl $16, 4(%rdi)
	mov $5, %r13d
	mov $8, %r14d
	call dsm_call
	call report_status_len
	mov $MAILBOX+MB_OUTPUT+4, %esi
	xor %eax, %eax
	mov (%rsi), %rcx
	cmp pattern(%rip), %rcx
	jne 1f
	mov 8(%rsi), %rcx
	cmp pattern+8(%rip), %rcx
	jne 1f
	mov $1, %eax
1:	REPORT32

	/* root F2: Start ARS over DIMM 0's SPA range, type persistent (2) */
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz no_memdev
	mov $MAILBOX+MB_INPUT, %edi
	mov 32(%rax), %rcx
	mov %rcx, 0(%rdi)
	mov 40(%rax), %rcx
	mov %rcx, 8(%rdi)
	movq $2, 16(%rdi)		/* type 2, flags 0, reserved 0 */
	mov %r12d, %ebp			/* keep the DIMM handle */
	xor %r12d, %r12d		/* handle 0: the root device */
	mov $2, %r13d
	mov $24, %r14d
	lea root_uuid(%rip), %r15
	call dsm_call
	call report_status_len

	/* root F3: Query ARS status */
	mov $3, %r13d
	xor %r14d, %r14d
	call dsm_call
	call report_status_len

	/* Intel F1: SMART health */
	mov %ebp, %r12d
	mov $1, %r13d
	xor %r14d, %r14d
	lea intel_uuid(%rip), %r15
	call dsm_call
	call report_status_len
	mov $MAILBOX+MB_OUTPUT+4, %esi
	mov (%rsi), %eax
	REPORT32
	EXIT 0
no_memdev:
	EXIT FAIL_NO_MEMDEV

/* Reports %eax (status) and %ecx (output length). */
report_status_len:
	REPORT32
	mov %ecx, %eax
	REPORT32
	ret

	.balign 8
pattern:
	.ascii "vnvdimm label!!\n"
#include "lib.S"
