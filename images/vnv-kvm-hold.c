/*
 * vnv-kvm-hold: keeps one idle KVM VM open for the nested test host's (L1's) whole life
 * (images/nested-init, docs/nested-host.md).
 *
 * Why: KVM switches kernel static keys on and off as VMs come and go. The first VM
 * enables the scheduler's preempt-notifier key (jump labels in __schedule and
 * finish_task_switch); the last one to go disables it; a vCPU's local APIC counts in
 * two more keys (apic_hw_disabled, apic_sw_disabled) in kvm.ko. Each switch rewrites
 * live kernel text with the int3 protocol (text_poke_bp) while the other CPU runs
 * through it.
 *
 * Under QEMU 7.2's multi-threaded TCG that rewrite can leave one vCPU running a stale
 * translation of the site, int3 and all, after memory already holds the new jump. Its
 * int3 handler (kprobe_int3_handler) finds no int3 in memory, takes it for a breakpoint
 * removed just after it hit, and returns to the same address to retry: forever, with
 * the runqueue lock often held, so the other vCPU spins on it. L1 froze that way in CI
 * (both vCPUs at the preempt-notifier site, one in the int3 handler, no heartbeat).
 * A loop creating and destroying a VM with one vCPU, with a pipe ping-pong keeping
 * both CPUs scheduling, froze L1 within 120 VMs in 4 runs of 4; with this holder
 * alive it created 3000 VMs without a stall (docs/nested-host.md).
 *
 * With this VM (and its one never-run vCPU, whose local APIC stays hardware- and
 * software-disabled) alive from boot on, every one of those keys stays on: the VMs the
 * tests create and destroy only move reference counts, and no kernel text is rewritten
 * while a test runs. The keys are switched once, here, while L1 is otherwise idle.
 *
 *   vnv-kvm-hold
 *
 * Creates the VM, then forks: the child keeps it (sleeping forever), the parent exits 0
 * once the VM exists, so the caller knows the keys are on. Exits 1 with the reason on
 * stderr when KVM refuses.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "vnv-kvm-hold: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return fail("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return fail("KVM_CREATE_VM");
    /* The in-kernel irqchip first, so the vCPU gets a local APIC (the APIC keys). */
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        return fail("KVM_CREATE_IRQCHIP");
    if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0)
        return fail("KVM_CREATE_VCPU");

    pid_t child = fork();
    if (child < 0)
        return fail("fork");
    if (child > 0)
        return 0;
    setsid();
    for (;;)
        pause();
}
