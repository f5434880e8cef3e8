/* (c) Writes 512 quadwords, PATTERN ^ i, from DIMM 0's SPA base + 0x2000, and
 * reports the SPA base (two words). The test finds them at offset 0x2000 of the
 * backing file. */
#include "vnvdimm.h"
#define PATTERN 0x766e76646d6d2d70
	.code64
	.text
	.globl _start
_start:
	call find_nfit
	mov $NFIT_SPA, %edx
	call find_struct
	test %rax, %rax
	jz 9f
	mov 32(%rax), %rdi
	mov %rdi, %r10
	add $0x2000, %rdi
	movabs $PATTERN, %rdx
	xor %ecx, %ecx
1:	mov %rdx, %rax
	xor %rcx, %rax
	mov %rax, (%rdi,%rcx,8)
	inc %ecx
	cmp $512, %ecx
	jb 1b
	mov %r10, %rax
	call report64
	EXIT 0
9:	EXIT FAIL_NO_SPA
#include "lib.S"
