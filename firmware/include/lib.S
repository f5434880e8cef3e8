/* Subroutines shared by the programs; #included at the end of each one. */

/* report64: reports %rax as two words, low then high. Clobbers %rax, %rdx. */
report64:
	REPORT32
	shr $32, %rax
	REPORT32
	ret

/* find_nfit: RSDP -> XSDT -> NFIT. Returns the NFIT address in %rbx, or exits. */
find_nfit:
	mov $RSDP_ADDR, %esi
	movabs $0x2052545020445352, %rax	/* "RSD PTR " */
	cmp %rax, (%rsi)
	jne 9f
	mov 24(%rsi), %rdi		/* XSDT address */
	mov 4(%rdi), %ecx		/* XSDT length */
	lea 36(%rdi), %r8		/* first entry */
	lea (%rdi,%rcx), %r9
1:	cmp %r9, %r8
	jae 8f
	mov (%r8), %rbx
	cmpl $0x5449464e, (%rbx)	/* "NFIT" */
	je 2f
	add $8, %r8
	jmp 1b
2:	ret
8:	EXIT FAIL_NFIT
9:	EXIT FAIL_RSDP

/* find_struct: first NFIT sub-structure of type %edx in the NFIT at %rbx -> %rax (0 if none). */
find_struct:
	mov 4(%rbx), %ecx
	lea (%rbx,%rcx), %r9
	lea 40(%rbx), %rax
1:	cmp %r9, %rax
	jae 3f
	movzwl (%rax), %ecx
	cmp %edx, %ecx
	je 2f
	movzwl 2(%rax), %ecx
	test %ecx, %ecx
	jz 3f
	add %rcx, %rax
	jmp 1b
3:	xor %eax, %eax
2:	ret

/* dsm_call: one _DSM call through mailbox and doorbell, as the AML makes it.
 * In: %r12d handle, %r13d function, %r14d input length (input already at
 * MAILBOX+MB_INPUT), %r15 -> 16-byte UUID; revision 1.
 * Out: %eax = status (first output word), %ecx = output length. Exits if the
 * completion word does not carry our sequence number after the doorbell store. */
dsm_call:
	mov $MAILBOX, %edi
	mov %r12d, MB_HANDLE(%rdi)
	movl $1, MB_REVISION(%rdi)
	mov %r13d, MB_FUNCTION(%rdi)
	mov %r14d, MB_INPUT_LEN(%rdi)
	mov (%r15), %rax
	mov %rax, MB_UUID(%rdi)
	mov 8(%r15), %rax
	mov %rax, MB_UUID+8(%rdi)
	mov dsm_seq(%rip), %eax
	inc %eax
	mov %eax, dsm_seq(%rip)
	mov $DOORBELL, %esi
	mov %eax, (%rsi)		/* traps: the VMM answers before we continue */
	cmp MB_COMPLETION(%rdi), %eax
	jne 1f
	mov MB_OUTPUT_LEN(%rdi), %ecx
	mov MB_OUTPUT(%rdi), %eax
	ret
1:	EXIT FAIL_DSM

	.balign 16
root_uuid:	/* 2F10E7A4-9E91-11E4-89D3-123B93F75CBA in ToUUID byte order */
	.byte 0xa4, 0xe7, 0x10, 0x2f, 0x91, 0x9e, 0xe4, 0x11, 0x89, 0xd3, 0x12, 0x3b, 0x93, 0xf7, 0x5c, 0xba
intel_uuid:	/* 4309AC30-0D11-11E4-9191-0800200C9A66 */
	.byte 0x30, 0xac, 0x09, 0x43, 0x11, 0x0d, 0xe4, 0x11, 0x91, 0x91, 0x08, 0x00, 0x20, 0x0c, 0x9a, 0x66
dsm_seq:
	.long 0
