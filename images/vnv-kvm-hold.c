/*
 * vnv-kvm-hold: keeps one idle KVM VM open for the nested test host's (L1's) whole life
 * (images/nested-init, docs/nested-host.md).
 *
 * Why: KVM switches kernel static keys on and off as VMs come and go. The first VM
 * enables the scheduler's preempt-notifier key (a jump label inside __schedule); the
 * last one to go disables it; a vCPU's local APIC counts in two more keys
 * (apic_hw_disabled, apic_sw_disabled) in kvm.ko. Each switch rewrites live kernel text
 * with the int3 protocol (text_poke_bp) while the other CPU runs through it. Under QEMU
 * TCG emulating SVM that rewrite has frozen L1 outright: both vCPUs found at the
 * __schedule jump-label site with interrupts off, one of them in the int3 handler, no
 * heartbeat for minutes, at the moment a test created its VM.
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
