//! The pvpanic port under KVM, on this host, with a bare-metal program that does what
//! Linux's pvpanic driver does from its panic notifier (firmware/pvpanic.S): the run
//! ends as a crash, exit status 3. Linux itself binding its driver to the DSDT's
//! `QEMU0001` device needs a host whose KVM can boot Linux; under TCG the same driver
//! talks to QEMU's pvpanic (tests/guest_panic_tcg.rs).

use vnvdimm_vmm::outcome::GuestOutcome;
use vnvdimm_selftest::{firmware, harness};

#[test]
fn a_panic_reported_on_port_0x505_ends_the_run_as_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, 64 << 20).unwrap();
    let mut vm = harness::boot(machine, firmware::PVPANIC, Box::new(std::io::sink())).unwrap();
    let run = harness::run(&mut vm).unwrap();
    assert_eq!(run.outcome, GuestOutcome::Crashed("kernel panic (pvpanic)".into()), "the program exits 7 if the write was ignored");
    assert_eq!(run.outcome.exit_status(), 3);
}

#[test]
fn the_dsdt_describes_the_port_the_way_linux_looks_for_it() {
    let dsdt = vnvdimm_machine::acpi::dsdt::build();
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"QEMU0001"), "no QEMU0001 device");
    // Small I/O descriptor: 0x47, decode16, min 0x505, max 0x505, alignment 1, length 1.
    assert!(has(&[0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01]), "no I/O resource at 0x505");
}
