/*
 * vnv-mmap-probe: the guest side of the poison-consumption tests (docs/nested-host.md,
 * docs/poison-consumption.md). Busybox has no tool that maps a file and reports what a
 * load from it does, so the guest image carries this one (built statically by
 * images/build-guest.sh with the host's gcc).
 *
 *   vnv-mmap-probe FILE OFFSET LENGTH GOFILE
 *
 * Maps [0, LENGTH) of FILE shared (a file on an fs-dax mount, or /dev/daxX.Y), stores a
 * pattern into the page at OFFSET and prints
 *     virt=0x...  phys=0x...
 * (phys from /proc/self/pagemap: the guest-physical address the host poisons). Then it
 * waits until GOFILE exists and loads the whole page. It prints one of
 *     read ok
 *     SIGBUS code=N addr=0x... expected=0x... lsb=N
 * and exits 0 after a clean read, 7 after SIGBUS (code 4 is BUS_MCEERR_AR), 2 on a usage
 * or setup error.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint64_t *expected;

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
	char line[160];
	int n;

	(void)sig;
	(void)ctx;
	n = snprintf(line, sizeof(line), "SIGBUS code=%d addr=%p expected=%p lsb=%d\n", info->si_code,
		     info->si_addr, (void *)expected, (int)info->si_addr_lsb);
	if (n > 0)
		write(1, line, (size_t)n);
	_exit(7);
}

static int fail(const char *what)
{
	perror(what);
	return 2;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	unsigned long long offset, length, entry;
	volatile uint64_t *page;
	uint64_t sum = 0;
	char *map;
	int fd, pagemap;
	size_t i;

	if (argc != 5) {
		fprintf(stderr, "usage: %s FILE OFFSET LENGTH GOFILE\n", argv[0]);
		return 2;
	}
	offset = strtoull(argv[2], NULL, 0);
	length = strtoull(argv[3], NULL, 0);
	if (offset % 4096 || offset + 4096 > length) {
		fprintf(stderr, "OFFSET must be page aligned and inside LENGTH\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return fail("open");
	map = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return fail("mmap");
	page = (volatile uint64_t *)(map + offset);
	expected = page;
	for (i = 0; i < 512; i++)
		page[i] = 0x766e76646d6d0000ULL + i;

	pagemap = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap < 0)
		return fail("open /proc/self/pagemap");
	if (pread(pagemap, &entry, sizeof(entry), (off_t)((uintptr_t)page / 4096 * 8)) != sizeof(entry))
		return fail("read /proc/self/pagemap");
	if (!(entry >> 63)) {
		fprintf(stderr, "the page is not present after the store\n");
		return 2;
	}
	printf("virt=%p phys=0x%llx\n", (void *)page, (entry & ((1ULL << 55) - 1)) * 4096);
	fflush(stdout);

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGBUS, &sa, NULL);

	while (access(argv[4], F_OK) != 0)
		usleep(10000);
	for (i = 0; i < 512; i++)
		sum += page[i];
	printf("read ok sum=0x%llx\n", (unsigned long long)sum);
	return 0;
}
