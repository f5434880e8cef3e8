//! The KVM VM's guest agent line (COM3 at 0x3E8, crates/vmm/src/devices/agent_port.rs), driven
//! by a bare-metal program since this host's KVM cannot boot Linux: what the guest
//! stores in THR arrives on the host end of the line, what the host sends is read from
//! RBR (more than the 64-byte FIFO, so the refill path is used), and the control API's
//! exec answers 409 once the guest stopped. Needs /dev/kvm.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use vnvdimm_control::backend::{Backend, BackendError};
use vnvdimm_vmm::backend::KvmBackend;
use vnvdimm_selftest::firmware;
use vnvdimm_selftest::harness;
use vnvdimm_vmm::GuestOutcome;

const DIMM_SIZE: u64 = 64 << 20;

#[test]
fn a_guest_line_crosses_com3_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, DIMM_SIZE).unwrap();
    let mut vm = harness::boot(machine, firmware::AGENT_UART, Box::new(std::io::sink())).unwrap();
    let host = vm.agent().take_host_end().expect("the agent line's host end");
    host.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    // 100 bytes and a newline: the guest has to drain the FIFO once for the rest to fit.
    let line: String = (0..100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let host_side = {
        let line = line.clone();
        std::thread::spawn(move || {
            let mut writer = host.try_clone().unwrap();
            let mut reader = BufReader::new(host);
            let mut greeting = String::new();
            reader.read_line(&mut greeting).unwrap();
            writer.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut echo = String::new();
            reader.read_line(&mut echo).unwrap();
            (greeting, echo)
        })
    };
    let result = harness::run(&mut vm).unwrap();
    assert_eq!(result.outcome, GuestOutcome::DebugExit(0));
    let (greeting, echo) = host_side.join().unwrap();
    assert_eq!(greeting.as_bytes(), firmware::AGENT_UART_GREETING);
    assert_eq!(echo, format!(">{line}\n"));
}

#[test]
fn exec_after_the_guest_stopped_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 1, DIMM_SIZE).unwrap();
    let mut vm = harness::boot(machine, firmware::EXIT0, Box::new(std::io::sink())).unwrap();
    let backend = KvmBackend::new(&vm);
    assert!(
        vm.agent().take_host_end().is_none(),
        "the backend holds the agent line"
    );
    let result = harness::run(&mut vm).unwrap();
    assert_eq!(result.outcome, GuestOutcome::DebugExit(0));
    match backend.exec("true", Duration::from_secs(1), &|| false) {
        Err(BackendError::Conflict(msg)) => assert!(msg.contains("stopped"), "{msg}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}
