//! The run loop driven by scripted exits (crosvm's device tests are the model): no
//! /dev/kvm, no guest; each test checks one decision of the loop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuExit;
use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::NvdimmPlatform;

use super::*;
use crate::arch::x86_64::mce::{tests_support, McaVendor, MceError};
use crate::devices::bus::{Action, Bus, BusDevice};
use crate::devices::power::{PcResetControl, PC_RESET_CONTROL_PORT};
use crate::memory::memslots::WindowAccess;
use crate::memory::pmem_slots::FetchFault;
use crate::outcome::GuestOutcome;
use crate::vcpu::vcpu_control::{Request, VcpuControl};
use crate::vcpu::vcpu_port::VcpuPort;

/// One scripted KVM_RUN.
enum Step {
    IoOut(u16, Vec<u8>),
    IoIn(u16, usize),
    MmioRead(u64, usize),
    MmioWrite(u64, Vec<u8>),
    InternalError,
    /// Runs the closure (another thread's request, say), then returns EINTR as a kick does.
    Kicked(Box<dyn FnOnce() + Send>),
    /// Returns EINTR once `control` says the machine is stopping (an AP waiting in
    /// KVM_RUN for a SIPI that never comes).
    UntilStopped(Arc<VcpuControl>),
}

/// What the loop did to a scripted vCPU.
#[derive(Default)]
struct Seen {
    injected: Vec<(u64, MachineCheckKind)>,
    /// The bytes each IoIn or MmioRead was answered with.
    reads: Vec<Vec<u8>>,
    immediate_exit_cleared: usize,
}

struct ScriptedVcpu {
    script: VecDeque<Step>,
    buffer: Vec<u8>,
    answering_a_read: bool,
    run: Box<kvm_run>,
    fetch_gpas: Vec<u64>,
    seen: Arc<Mutex<Seen>>,
}

impl ScriptedVcpu {
    fn new(script: Vec<Step>) -> (ScriptedVcpu, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let vcpu = ScriptedVcpu {
            script: script.into(),
            buffer: Vec::new(),
            answering_a_read: false,
            run: Box::default(),
            fetch_gpas: Vec::new(),
            seen: seen.clone(),
        };
        (vcpu, seen)
    }
}

impl VcpuPort for ScriptedVcpu {
    fn run(&mut self) -> Result<VcpuExit<'_>, kvm_ioctls::Error> {
        if std::mem::take(&mut self.answering_a_read) {
            self.seen.lock().unwrap().reads.push(self.buffer.clone());
        }
        let step = self.script.pop_front().expect("the loop ran the vCPU past the end of its script");
        match step {
            Step::IoOut(port, data) => {
                self.buffer = data;
                Ok(VcpuExit::IoOut(port, &self.buffer))
            }
            Step::IoIn(port, len) => {
                self.buffer = vec![0; len];
                self.answering_a_read = true;
                Ok(VcpuExit::IoIn(port, &mut self.buffer))
            }
            Step::MmioRead(gpa, len) => {
                self.buffer = vec![0; len];
                self.answering_a_read = true;
                Ok(VcpuExit::MmioRead(gpa, &mut self.buffer))
            }
            Step::MmioWrite(gpa, data) => {
                self.buffer = data;
                Ok(VcpuExit::MmioWrite(gpa, &self.buffer))
            }
            Step::InternalError => Ok(VcpuExit::InternalError),
            Step::Kicked(request) => {
                request();
                Err(kvm_ioctls::Error::new(libc::EINTR))
            }
            Step::UntilStopped(control) => {
                while !control.stopping() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(kvm_ioctls::Error::new(libc::EINTR))
            }
        }
    }

    fn clear_immediate_exit(&mut self) {
        self.seen.lock().unwrap().immediate_exit_cleared += 1;
    }

    fn kvm_run(&mut self) -> *mut kvm_run {
        &mut *self.run
    }

    fn inject_machine_check(&self, gpa: u64, kind: MachineCheckKind, _vendor: McaVendor) -> Result<(), MceError> {
        self.seen.lock().unwrap().injected.push((gpa, kind));
        Ok(())
    }

    fn fetch_gpas(&self) -> Vec<u64> {
        self.fetch_gpas.clone()
    }
}

/// One poisoned page at `POISONED`; the rest of the window at `WINDOW` served.
struct FakeWindows;

const WINDOW: u64 = 0x1_0000_0000;
const POISONED: u64 = WINDOW + 0x3000;

impl WindowExits for FakeWindows {
    fn on_read(&self, gpa: u64, data: &mut [u8]) -> Option<WindowAccess> {
        let offset = gpa.checked_sub(WINDOW).filter(|o| *o < 1 << 20)?;
        data.fill(0xff);
        Some(match gpa & !0xfff {
            POISONED => WindowAccess::Poisoned { dimm: 0, offset },
            _ => WindowAccess::Served { dimm: 0, offset },
        })
    }

    fn on_write(&self, gpa: u64, _data: &[u8]) -> Option<WindowAccess> {
        let offset = gpa.checked_sub(WINDOW).filter(|o| *o < 1 << 20)?;
        Some(WindowAccess::Served { dimm: 0, offset })
    }

    fn on_fetch_failure(&self, gpas: &[u64]) -> FetchFault {
        match gpas.iter().find(|&&gpa| gpa & !0xfff == POISONED) {
            Some(&gpa) => FetchFault::Poisoned { gpa },
            None => FetchFault::NotWindows,
        }
    }
}

/// (offset, bytes) of every write a device saw.
type Writes = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Records what it is written, answers reads with `answer`, and says `on_write`.
struct Recorder {
    writes: Writes,
    answer: u8,
    on_write: fn() -> Action,
}

impl BusDevice for Recorder {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.answer);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Action {
        self.writes.lock().unwrap().push((offset, data.to_vec()));
        (self.on_write)()
    }
}

const RECORDER_PORT: u16 = 0x80;
const DOORBELL: u64 = 0xC000_0000;
/// Written to the PC reset control port: the machine resets, ending the run.
fn reset() -> Step {
    Step::IoOut(PC_RESET_CONTROL_PORT, vec![0x6])
}

/// A machine of buses, fake windows, a device model and a control channel.
struct Machine {
    io_bus: Bus,
    mmio_bus: Bus,
    port_writes: Writes,
    doorbell_writes: Writes,
    control: Arc<VcpuControl>,
    platform: Mutex<NvdimmPlatform>,
    dsm_calls: AtomicUsize,
}

impl Machine {
    fn new() -> Machine {
        let port_writes = Arc::new(Mutex::new(Vec::new()));
        let doorbell_writes = Arc::new(Mutex::new(Vec::new()));
        let mut io_bus = Bus::new("io");
        let recorder = Recorder { writes: port_writes.clone(), answer: 0x5a, on_write: || Action::Continue };
        io_bus.insert(u64::from(RECORDER_PORT), 1, Arc::new(Mutex::new(recorder))).unwrap();
        io_bus.insert(u64::from(PC_RESET_CONTROL_PORT), 1, Arc::new(Mutex::new(PcResetControl))).unwrap();
        let mut mmio_bus = Bus::new("mmio");
        let doorbell = Recorder { writes: doorbell_writes.clone(), answer: 0, on_write: || Action::DsmServed };
        mmio_bus.insert(DOORBELL, 4096, Arc::new(Mutex::new(doorbell))).unwrap();
        Machine {
            io_bus,
            mmio_bus,
            port_writes,
            doorbell_writes,
            control: Arc::new(VcpuControl::new()),
            platform: Mutex::new(tests_support::platform()),
            dsm_calls: AtomicUsize::new(0),
        }
    }

    /// Runs `vcpus` on this machine; `machine_checks` as a KVM that can (or cannot) give them.
    fn run(&self, vcpus: &mut [ScriptedVcpu], machine_checks: bool, run_aps: bool) -> GuestOutcome {
        let after_dsm = || {
            self.dsm_calls.fetch_add(1, Ordering::SeqCst);
        };
        let targets = ExitTargets {
            io_bus: &self.io_bus,
            mmio_bus: &self.mmio_bus,
            windows: &FakeWindows,
            control: &self.control,
            platform: &self.platform,
            machine_checks: machine_checks.then_some(McaVendor::Intel),
            after_dsm: &after_dsm,
        };
        run_vcpus(&targets, vcpus, run_aps).expect("the loop failed")
    }

    fn machine_checks_logged(&self) -> Vec<(u64, MachineCheckKind, bool)> {
        self.platform
            .lock()
            .unwrap()
            .events_since(0)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::MachineCheck { gpa, kind, delivered } => Some((gpa, kind, delivered)),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn port_accesses_reach_the_io_bus_and_a_reset_ends_the_run() {
    let machine = Machine::new();
    let (vcpu, seen) = ScriptedVcpu::new(vec![
        Step::IoOut(RECORDER_PORT, vec![7]),
        Step::IoIn(RECORDER_PORT, 1),
        Step::IoIn(0x3f0, 1), // no device there: reads as all ones
        reset(),
    ]);
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::Reset);
    assert_eq!(*machine.port_writes.lock().unwrap(), vec![(0, vec![7])]);
    assert_eq!(seen.lock().unwrap().reads, vec![vec![0x5a], vec![0xff]]);
}

#[test]
fn every_dsm_call_is_followed_by_the_after_dsm_step() {
    let machine = Machine::new();
    let (vcpu, _) = ScriptedVcpu::new(vec![
        Step::MmioWrite(DOORBELL, 1u32.to_le_bytes().to_vec()),
        Step::MmioWrite(DOORBELL, 2u32.to_le_bytes().to_vec()),
        reset(),
    ]);
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::Reset);
    assert_eq!(machine.doorbell_writes.lock().unwrap().len(), 2);
    assert_eq!(machine.dsm_calls.load(Ordering::SeqCst), 2);
}

#[test]
fn a_load_from_a_poisoned_page_raises_an_action_required_machine_check() {
    let machine = Machine::new();
    let (vcpu, seen) = ScriptedVcpu::new(vec![
        Step::MmioRead(WINDOW + 0x10, 8), // served from the file: no machine check
        Step::MmioRead(POISONED + 0x18, 8),
        reset(),
    ]);
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::Reset);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.injected, vec![(POISONED + 0x18, MachineCheckKind::ActionRequired)]);
    assert_eq!(seen.reads, vec![vec![0xff; 8], vec![0xff; 8]]);
    assert_eq!(machine.machine_checks_logged(), vec![(POISONED + 0x18, MachineCheckKind::ActionRequired, true)]);
}

#[test]
fn without_machine_checks_a_poisoned_load_is_logged_as_not_delivered() {
    let machine = Machine::new();
    let (vcpu, seen) = ScriptedVcpu::new(vec![Step::MmioRead(POISONED, 4), reset()]);
    assert_eq!(machine.run(&mut [vcpu], false, false), GuestOutcome::Reset);
    assert!(seen.lock().unwrap().injected.is_empty());
    assert_eq!(machine.machine_checks_logged(), vec![(POISONED, MachineCheckKind::ActionRequired, false)]);
}

#[test]
fn a_store_inside_a_window_never_reaches_the_mmio_bus() {
    let machine = Machine::new();
    let (vcpu, _) = ScriptedVcpu::new(vec![Step::MmioWrite(WINDOW + 0x40, vec![1, 2, 3, 4]), reset()]);
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::Reset);
    assert!(machine.doorbell_writes.lock().unwrap().is_empty());
    assert_eq!(machine.dsm_calls.load(Ordering::SeqCst), 0);
}

#[test]
fn a_kick_serves_the_queued_requests_before_the_next_entry() {
    let machine = Machine::new();
    let control = machine.control.clone();
    let later = machine.control.clone();
    let (vcpu, seen) = ScriptedVcpu::new(vec![
        Step::Kicked(Box::new(move || {
            control.request(Request::MachineCheck { gpa: WINDOW, kind: MachineCheckKind::ActionOptional }).unwrap();
        })),
        Step::Kicked(Box::new(move || {
            later.request(Request::PowerOff).unwrap();
        })),
    ]);
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::PowerOff);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.injected, vec![(WINDOW, MachineCheckKind::ActionOptional)]);
    assert_eq!(seen.immediate_exit_cleared, 2, "each kick's immediate_exit is cleared");
    let events = machine.platform.lock().unwrap().events_since(0);
    assert!(
        events.iter().any(|e| e.kind == EventKind::PowerOff { reason: API_POWER_OFF_REASON.to_string() }),
        "{events:?}"
    );
    assert!(machine.control.wait_served(2, std::time::Duration::ZERO), "both requests marked served");
}

#[test]
fn a_fetch_from_a_poisoned_page_is_consumed_or_without_machine_checks_ends_the_run() {
    let machine = Machine::new();
    let (mut vcpu, seen) = ScriptedVcpu::new(vec![Step::InternalError, reset()]);
    vcpu.fetch_gpas = vec![POISONED + 0xffe, POISONED + 0x100d];
    assert_eq!(machine.run(&mut [vcpu], true, false), GuestOutcome::Reset);
    assert_eq!(seen.lock().unwrap().injected, vec![(POISONED + 0xffe, MachineCheckKind::ActionRequired)]);

    let machine = Machine::new();
    let (mut vcpu, _) = ScriptedVcpu::new(vec![Step::InternalError]);
    vcpu.fetch_gpas = vec![POISONED];
    let GuestOutcome::Crashed(why) = machine.run(&mut [vcpu], false, false) else {
        panic!("a poisoned fetch without machine checks must end the run as a crash");
    };
    assert!(why.contains("poisoned NVDIMM page"), "{why}");

    let machine = Machine::new();
    let (mut vcpu, _) = ScriptedVcpu::new(vec![Step::InternalError]);
    vcpu.fetch_gpas = vec![0x2000];
    let GuestOutcome::Crashed(why) = machine.run(&mut [vcpu], true, false) else {
        panic!("an emulation failure outside the windows must end the run as a crash");
    };
    assert!(why.contains("emulation failure"), "{why}");
}

#[test]
fn one_application_processor_stopping_the_machine_stops_the_boot_vcpu() {
    let machine = Machine::new();
    let (bsp, _) = ScriptedVcpu::new(vec![Step::UntilStopped(machine.control.clone())]);
    let (ap, _) = ScriptedVcpu::new(vec![Step::IoOut(RECORDER_PORT, vec![1]), reset()]);
    assert_eq!(machine.run(&mut [bsp, ap], true, true), GuestOutcome::Reset);
    assert_eq!(machine.port_writes.lock().unwrap().len(), 1);
}

#[test]
fn without_run_aps_only_the_boot_vcpu_runs() {
    let machine = Machine::new();
    let (bsp, _) = ScriptedVcpu::new(vec![reset()]);
    // Any run of this one would panic: its script is empty.
    let (ap, _) = ScriptedVcpu::new(vec![]);
    assert_eq!(machine.run(&mut [bsp, ap], true, false), GuestOutcome::Reset);
}
