//! Executing code from an NVDIMM window (a binary on fs-dax) under lazy registration:
//! the guest's first touch of a window piece is an instruction fetch, which KVM cannot
//! serve as an MMIO exit. The VMM must register the piece and let the fetch restart.
//! Needs /dev/kvm (the KVM backend's tests fail without it rather than pass silently).

use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use vnvdimm_selftest::debug_port::{EXIT_PORT, REPORT_PORT};
use vnvdimm_selftest::harness;
use vnvdimm_vmm::GuestOutcome;

const DIMM_SIZE: u64 = 64 << 20;
/// Where the code lies in the window: not at its start, so the piece is found from RIP.
const CODE_OFFSET: u64 = 0x3_2000;
const MAGIC: u32 = 0x600d_f00d;

/// `mov rax, target; jmp rax`: run from RAM, jumps into the window.
fn trampoline(target: u64) -> Vec<u8> {
    let mut code = vec![0x48, 0xb8];
    code.extend_from_slice(&target.to_le_bytes());
    code.extend_from_slice(&[0xff, 0xe0]);
    code
}

/// `mov eax, MAGIC; mov dx, REPORT_PORT; out dx, eax; mov eax, [rip-x] (its own first
/// bytes, a load from the now registered piece); mov dx, REPORT_PORT; out dx, eax;
/// mov al, 7; mov dx, EXIT_PORT; out dx, al; hlt`
fn window_code() -> Vec<u8> {
    let mut code = vec![0xb8];
    code.extend_from_slice(&MAGIC.to_le_bytes());
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&REPORT_PORT.to_le_bytes());
    code.push(0xef);
    // mov eax, [rip + disp32]: disp is relative to the end of this 6-byte instruction.
    let here = code.len() as i32 + 6;
    code.extend_from_slice(&[0x8b, 0x05]);
    code.extend_from_slice(&(-here).to_le_bytes());
    code.extend_from_slice(&[0x66, 0xba]);
    code.extend_from_slice(&REPORT_PORT.to_le_bytes());
    code.push(0xef);
    code.extend_from_slice(&[0xb0, 0x07, 0x66, 0xba]);
    code.extend_from_slice(&EXIT_PORT.to_le_bytes());
    code.extend_from_slice(&[0xee, 0xf4]);
    code
}

#[test]
fn the_first_touch_of_a_window_piece_may_be_an_instruction_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, DIMM_SIZE).unwrap();
    let spa = machine.memory_map.layout.dimms[0].spa_base;
    let backing = machine.platform.dimms[0].path.clone();
    let code = window_code();
    let file = std::fs::OpenOptions::new().write(true).open(&backing).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &code, CODE_OFFSET).unwrap();
    drop(file);

    let mut vm = harness::boot(machine, &trampoline(spa + CODE_OFFSET), Box::new(std::io::sink())).unwrap();
    let pmem = vm.pmem().clone();
    assert_eq!(pmem.slot_count(), 0, "no window slot before the guest touches one");
    assert!(pmem.is_unregistered(spa + CODE_OFFSET));
    let result = harness::run(&mut vm).unwrap();

    assert_eq!(result.outcome, GuestOutcome::DebugExit(7), "report {:x?}", result.report);
    let first_word = u32::from_le_bytes([code[0], code[1], code[2], code[3]]);
    assert_eq!(result.report, vec![MAGIC, first_word], "ran from the window, then loaded its own bytes");
    assert!(!pmem.is_unregistered(spa + CODE_OFFSET), "the fetch registered the piece");
    assert_eq!(pmem.activation_stats().pieces, 1);
}

#[test]
fn a_fetch_from_a_poisoned_window_page_is_an_action_required_machine_check() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, DIMM_SIZE).unwrap();
    let spa = machine.memory_map.layout.dimms[0].spa_base;
    let mut vm = harness::boot(machine, &trampoline(spa + CODE_OFFSET), Box::new(std::io::sink())).unwrap();
    vm.platform().lock().unwrap().add_poison(0, CODE_OFFSET, 4096).unwrap();
    vm.pmem().sync(vm.platform()).unwrap();
    let pmem = vm.pmem().clone();
    assert!(pmem.is_hole(spa + CODE_OFFSET));
    let result = harness::run(&mut vm).unwrap();

    assert!(result.report.is_empty(), "nothing ran from the poisoned page: {:x?}", result.report);
    let checks: Vec<_> = vm
        .platform()
        .lock()
        .unwrap()
        .events_since(0)
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::MachineCheck { gpa, kind, delivered } => Some((gpa, kind, delivered)),
            _ => None,
        })
        .collect();
    assert_eq!(checks, vec![(spa + CODE_OFFSET, MachineCheckKind::ActionRequired, true)], "{:?}", result.outcome);
    // This guest has no #MC handler (no IDT): the machine check is a triple fault.
    assert!(matches!(&result.outcome, GuestOutcome::Crashed(why) if why.contains("SHUTDOWN")), "{:?}", result.outcome);
}
