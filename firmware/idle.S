/* An idling guest the host drives through the command port (tests of the control
 * API against a running VM). Each command's result is one report record of five
 * words: a tag, then two 64-bit values (low word first).
 *   1 READ   arg = guest address: loads the quadword there.
 *            -> 0x52440001, address, value
 *   2 NOTIFY counts the notification raises since its last call (raised - seen, then
 *     seen = raised), as \_SB.NVDR.NEVT does.
 *            -> 0x4E540002, root word | DIMM 0 word << 32, DIMM 1 word
 *   3 EXIT   exit code 0.
 * A machine check (action optional from the API, or action required when a READ hits
 * poison) runs mc_handler, which reports 0x4D430003, MC9_ADDR, MC9_STATUS, clears
 * the bank and MCG_STATUS and returns (RIPV is set in both kinds the VMM raises). */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	call setup_mc_idt
1:	mov $CMD_PORT, %dx
	in %dx, %eax			/* the VMM waits up to 1 ms for a command */
	cmp $1, %eax
	je cmd_read
	cmp $2, %eax
	je cmd_notify
	cmp $3, %eax
	je cmd_exit
	jmp 1b

cmd_read:
	mov $CMD_ARG_LO, %dx
	in %dx, %eax
	mov %eax, %esi
	mov $CMD_ARG_HI, %dx
	in %dx, %eax
	shl $32, %rax
	or %rax, %rsi
	mov (%rsi), %rbx		/* exits if the page is poisoned */
	mov $0x52440001, %eax
	REPORT32
	mov %rsi, %rax
	call report64
	mov %rbx, %rax
	call report64
	jmp 1b

cmd_notify:
	mov $MAILBOX, %edi
	mov $0x4E540002, %eax
	REPORT32
	/* As NEVT does: new raises = raised - seen, then seen = raised (mailbox.rs). */
	mov 0x34(%rdi), %ebx		/* root 0x81 raised */
	mov 0x3C(%rdi), %eax		/* root 0x81 seen */
	mov %ebx, 0x3C(%rdi)
	sub %eax, %ebx
	mov 0x40(%rdi), %ecx		/* DIMM 0 raised */
	mov 0xC0(%rdi), %eax
	mov %ecx, 0xC0(%rdi)
	sub %eax, %ecx
	mov 0x44(%rdi), %esi		/* DIMM 1 raised */
	mov 0xC4(%rdi), %eax
	mov %esi, 0xC4(%rdi)
	sub %eax, %esi
	mov %ebx, %eax
	REPORT32
	mov %ecx, %eax
	REPORT32
	mov %esi, %eax
	REPORT32
	xor %eax, %eax
	REPORT32
	jmp 1b

cmd_exit:
	EXIT 0

mc_handler:
	push %rax
	push %rcx
	push %rdx
	mov $0x4D430003, %eax
	REPORT32
	mov $MSR_MC9_ADDR, %ecx
	call rdmsr64
	call report64
	mov $MSR_MC9_STATUS, %ecx
	call rdmsr64
	call report64
	xor %eax, %eax
	xor %edx, %edx
	mov $MSR_MC9_STATUS, %ecx
	wrmsr
	mov $MSR_MCG_STATUS, %ecx
	wrmsr
	pop %rdx
	pop %rcx
	pop %rax
	iretq
#include "lib.S"
#include "mc.S"
