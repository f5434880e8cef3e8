/* The guest agent's line (COM3, crates/vmm/src/devices/agent_port.rs) from the guest side,
 * polled as a bare-metal program must (no interrupts here): sends a greeting through
 * THR, then reads one line from RBR and sends it back after a '>' prefix, then exits 0. */
#include "vnvdimm.h"
#define COM3     0x3E8
#define LSR      5
#define LSR_DR   0x01
#define LSR_THRE 0x20
	.code64
	.text
	.globl _start
_start:
	lea greeting(%rip), %rsi
1:	movb (%rsi), %bl
	test %bl, %bl
	jz 2f
	call putc
	inc %rsi
	jmp 1b
2:	mov $'>', %bl
	call putc
3:	call getc
	call putc
	cmp $'\n', %bl
	jne 3b
	EXIT 0

/* Sends %bl; clobbers %al, %dx. */
putc:
	mov $(COM3 + LSR), %dx
4:	in %dx, %al
	test $LSR_THRE, %al
	jz 4b
	mov $COM3, %dx
	mov %bl, %al
	out %al, %dx
	ret

/* Waits for a received byte, returns it in %bl; clobbers %al, %dx. */
getc:
	mov $(COM3 + LSR), %dx
5:	in %dx, %al
	test $LSR_DR, %al
	jz 5b
	mov $COM3, %dx
	in %dx, %al
	mov %al, %bl
	ret

greeting:
	.asciz "hello from COM3\n"
