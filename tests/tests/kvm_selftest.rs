//! The firmware/ programs under KVM on this host: each check compares what the
//! guest saw or did with what the VMM generated. Where /dev/kvm cannot be opened
//! the tests fail with the reason (they must not pass silently).

use std::os::unix::fs::FileExt;

use vnvdimm_selftest::selftest::{self, Status, DIMM_SIZE};
use vnvdimm_selftest::{firmware, harness};
use vnvdimm_vmm::GuestOutcome;

fn check(name: &'static str, f: fn(&mut vnvdimm_vmm::Vm, &harness::RunResult, &vnvdimm_machine::Machine) -> Result<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let c = selftest::run_check(dir.path(), name, f);
    assert_eq!(c.status, Status::Pass, "{c}");
}

#[test]
fn acpi_nfit_values_equal_the_generated_ones() {
    check("acpi-nfit", selftest::check_acpi_nfit);
}

#[test]
fn dsm_through_mailbox_and_doorbell() {
    check("dsm-mailbox", selftest::check_dsm);
}

#[test]
fn flush_hint_counts_and_logs() {
    check("flush-hint", selftest::check_flush);
}

/// Independent of the selftest's own comparison: the guest's stores are in the file.
#[test]
fn guest_stores_land_in_the_backing_file() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 2, DIMM_SIZE).unwrap();
    let path = machine.platform.dimms[0].path.clone();
    let other = machine.platform.dimms[1].path.clone();
    let mut vm = harness::boot(machine, firmware::PATTERN, Box::new(std::io::sink())).unwrap();
    let run = harness::run(&mut vm).unwrap();
    assert_eq!(run.outcome, GuestOutcome::DebugExit(0));
    let file = std::fs::File::open(&path).unwrap();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, firmware::PATTERN_OFFSET + 8 * 7).unwrap();
    assert_eq!(u64::from_le_bytes(word), firmware::PATTERN_VALUE ^ 7);
    file.read_exact_at(&mut word, firmware::PATTERN_OFFSET - 8).unwrap();
    assert_eq!(word, [0; 8], "nothing written before the pattern");
    let other = std::fs::read(other).unwrap();
    assert!(other.iter().all(|&b| b == 0), "DIMM 1 untouched");
}

/// A bad program ends as a crash with exit status 3, not a hang or a panic.
#[test]
fn crashing_guest_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, DIMM_SIZE).unwrap();
    // ud2: this host cannot deliver the #UD, so KVM reports shutdown or internal error.
    let mut vm = harness::boot(machine, &[0x0f, 0x0b], Box::new(std::io::sink())).unwrap();
    let run = harness::run(&mut vm).unwrap();
    assert!(matches!(run.outcome, GuestOutcome::Crashed(_)), "{:?}", run.outcome);
    assert_eq!(run.outcome.exit_status(), 3);
}

/// Host poison on DIMM 0's page 3 before the run: the guest's load exits, the VMM
/// injects SRAR for that address and logs it, the guest's #MC handler reads MC9_ADDR.
#[test]
fn poison_check_passes_with_the_guests_handler_seeing_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let c = selftest::run_check(dir.path(), "poison-read", selftest::check_poison);
    assert_eq!(c.status, Status::Pass, "{c}");
    assert!(c.detail.contains("MC9_ADDR"), "{c}");
}

#[test]
fn capability_check_refuses_kvm_for_linux_here() {
    match vnvdimm_vmm::kvm_check::check() {
        Ok(caps) => eprintln!("this host's KVM can run Linux ({caps:?}); the refusal path is not exercised here"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("--backend tcg"), "{msg}");
        }
    }
}
