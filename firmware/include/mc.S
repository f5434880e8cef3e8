/* setup_mc_idt: an IDT whose #MC gate (vector 18) points at the program's
 * `mc_handler`, loaded with lidt. The VMM's loader already put a 64-bit TSS in TR
 * (bare_metal.rs), which exception delivery in long mode needs. #included by the
 * programs that take machine checks, after lib.S. Clobbers %rax, %rdi. */
setup_mc_idt:
	lea mc_handler(%rip), %rax
	lea mc_idt(%rip), %rdi
	mov %ax, 18*16(%rdi)		/* offset 15:0 */
	movw $0x08, 18*16+2(%rdi)	/* 64-bit code selector */
	movw $0x8E00, 18*16+4(%rdi)	/* present, DPL 0, interrupt gate, IST 0 */
	shr $16, %rax
	mov %ax, 18*16+6(%rdi)		/* offset 31:16 */
	shr $16, %rax
	mov %eax, 18*16+8(%rdi)		/* offset 63:32 */
	movl $0, 18*16+12(%rdi)
	movw $(19*16-1), mc_idtr(%rip)
	mov %rdi, mc_idtr+2(%rip)
	lidt mc_idtr(%rip)
	ret

/* rdmsr64: %ecx = MSR -> %rax (clobbers %rdx). */
rdmsr64:
	rdmsr
	shl $32, %rdx
	mov %eax, %eax
	or %rdx, %rax
	ret

	.balign 16
mc_idt:
	.fill 19*16, 1, 0
mc_idtr:
	.word 0
	.quad 0
