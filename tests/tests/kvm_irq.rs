//! The in-kernel interrupt controller of the KVM VM: created before the vCPUs, the
//! GED's GSI 5 can be raised with KVM_IRQ_LINE (and cannot on a VM without one), the
//! control API's notifications raise it and leave the GED's NVDIMM bit pending, and a
//! machine whose other vCPUs run in their own threads (waiting for INIT/SIPI) stops
//! them all when vCPU 0 ends the run. Needs /dev/kvm.

use std::sync::mpsc;
use std::time::Duration;

use nvdimm_model::config::MIB;
use vnvdimm_control::backend::Backend;
use vnvdimm_machine::{Machine, MachineConfig};
use vnvdimm_vmm::backend::KvmBackend;
use vnvdimm_selftest::firmware;
use vnvdimm_vmm::devices::ged::{IrqLine, KvmIrqLine, GED_EVENT_NVDIMM, GED_GSI};
use vnvdimm_selftest::harness;
use vnvdimm_selftest::harness::BareMetalVm;
use vnvdimm_vmm::GuestOutcome;

const DIMM_SIZE: u64 = 64 << 20;

fn vm(dir: &std::path::Path, cpus: u8, program: &[u8]) -> BareMetalVm {
    vm_with(dir, cpus, program, false)
}

/// With `run_aps`, vCPUs 1.. run in threads of their own, as for a Linux guest.
fn vm_with(dir: &std::path::Path, cpus: u8, program: &[u8], run_aps: bool) -> BareMetalVm {
    let machine = harness::sparse_machine(dir, 1, DIMM_SIZE).unwrap();
    let machine = Machine::new(MachineConfig { memory: 64 * MIB, cpus }, machine.platform).unwrap();
    harness::boot_with(machine, program, Box::new(std::io::sink()), |b| b.run_aps(run_aps)).unwrap()
}

#[test]
fn the_irqchip_exists_and_the_ged_line_can_be_raised() {
    let dir = tempfile::tempdir().unwrap();
    let vm = vm(dir.path(), 1, firmware::EXIT0);
    if let Err(e) = vm.irqchip() {
        panic!("KVM_CREATE_IRQCHIP on this host: {e}");
    }
    vm.ged().raise(GED_EVENT_NVDIMM, &KvmIrqLine::new(vm.vm_fd(), GED_GSI)).expect("KVM_IRQ_LINE on GSI 5");
    assert_eq!(vm.ged().pending() & GED_EVENT_NVDIMM, GED_EVENT_NVDIMM);
    let mut reg = [0u8; 4];
    vm.ged().mmio_read(0, &mut reg);
    assert_eq!(u32::from_le_bytes(reg) & GED_EVENT_NVDIMM, GED_EVENT_NVDIMM, "_EVT's read sees the bit");
    assert_eq!(vm.ged().pending(), 0, "and consumes it");
}

/// The control: the same ioctl on a VM without an irqchip is refused, so the test
/// above would notice a VM built without one.
#[test]
fn without_an_irqchip_the_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let vm = vm(dir.path(), 1, firmware::EXIT0);
    let bare = vm.kvm().create_vm().unwrap();
    assert!(KvmIrqLine::new(&bare, GED_GSI).trigger().is_err());
}

#[test]
fn notifications_pulse_the_ged_and_leave_its_bit_pending() {
    let dir = tempfile::tempdir().unwrap();
    let vm = vm(dir.path(), 1, firmware::EXIT0);
    let backend = KvmBackend::new(&vm);
    backend.raise_notifications().unwrap();
    assert_eq!(vm.ged().pending(), 0, "nothing queued, nothing raised");
    vm.platform().lock().unwrap().notify_new_errors();
    assert_eq!(vm.ged().pending(), 0);
    backend.raise_notifications().unwrap();
    assert_eq!(vm.ged().pending() & GED_EVENT_NVDIMM, GED_EVENT_NVDIMM);
}

/// vCPU 1 runs in its own thread, blocked in KVM_RUN waiting for a SIPI that never
/// comes; vCPU 0's exit must kick it out, or the run would never return.
#[test]
fn the_end_of_vcpu_0_stops_the_waiting_application_processors() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = vm_with(dir.path(), 3, firmware::EXIT0, true);
    assert_eq!(vm.vcpus().len(), 3);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let run = harness::run(&mut vm).unwrap();
        let _ = tx.send((run.outcome, vm.vcpus().len()));
    });
    let (outcome, vcpus) = rx.recv_timeout(Duration::from_secs(20)).expect("the run returned");
    assert_eq!(outcome, GuestOutcome::DebugExit(0));
    assert_eq!(vcpus, 3, "the vCPUs are back in the VM");
}

/// The same with the machine running for a while (vCPU 2 surely blocked in KVM_RUN)
/// and the control API's power-off ending it: exit status 0, all threads gone.
#[test]
fn api_power_off_stops_every_vcpu_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut vm = vm_with(dir.path(), 2, firmware::IDLE, true);
    let backend = KvmBackend::new(&vm);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(harness::run(&mut vm).unwrap().outcome);
    });
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "the idle guest keeps running");
    backend.power_off().unwrap();
    let outcome = rx.recv_timeout(Duration::from_secs(20)).expect("the run returned");
    assert_eq!(outcome, GuestOutcome::PowerOff);
    assert_eq!(outcome.exit_status(), 0);
}
