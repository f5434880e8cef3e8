/* The smallest guest: exits with code 0 at its first instruction. Used to time
 * process start to first guest instruction. */
#include "vnvdimm.h"
	.code64
	.text
	.globl _start
_start:
	EXIT 0
