#!/bin/sh
# memory-failure.sh: a page of an fs-dax file that a process has mapped goes bad; the host
# reports it with an action-optional machine check (as a patrol scrub would); with early
# kill the guest's memory_failure() must send that process SIGBUS (BUS_MCEERR_AO, code 5),
# and the guest must live on.
set -e
g() { vnvdimm ctl exec --timeout 120 -- "$1"; }
g 'ndctl create-namespace -f -e namespace0.0 -m fsdax >/dev/null && mkfs.ext4 -q -F -b 4096 /dev/pmem0 &&
   mkdir -p /mnt && mount -t ext4 -o dax /dev/pmem0 /mnt && dd if=/dev/zero of=/mnt/f bs=4096 count=4 2>/dev/null &&
   sync && echo 1 > /proc/sys/vm/memory_failure_early_kill'
# The probe maps the file, stores into its third page and prints that page's guest-physical
# address, then waits for /tmp/go before reading it.
g 'vnv-mmap-probe /mnt/f 8192 16384 /tmp/go </dev/null >/tmp/probe.out 2>&1 & sleep 2'
phys=$(g 'cat /tmp/probe.out' | sed -n 's/.*phys=\(0x[0-9a-f]*\).*/\1/p')
vnvdimm ctl poison add --spa "$phys" --length 4096 --machine-check action-optional
sleep 2
g 'touch /tmp/go; sleep 1; cat /tmp/probe.out' | grep 'SIGBUS code=5'
g 'ndctl list -M' | grep -q badblocks   # the nfit driver recorded the bad block
g 'true'                                # and the guest lives on
