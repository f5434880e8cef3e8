//! A [`Backend`] without a VM, for tests: it records every call, does what a real
//! backend logs (notifications, machine checks, power-off) and can be told to fail.

use nvdimm_model::sync::LockUnpoisoned;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::events::Notification;
use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};

use crate::backend::{Backend, BackendError, Capabilities, ExecOutput, VmInfo, VmState};

/// One call a [`FakeBackend`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// With the notifications it took from the platform.
    RaiseNotifications(Vec<Notification>),
    MachineCheck {
        gpa: u64,
        kind: MachineCheckKind,
    },
    PoisonChanged(usize),
    PowerOff,
    Exec {
        command: String,
        timeout_secs: u64,
    },
}

pub struct FakeBackend {
    platform: Mutex<NvdimmPlatform>,
    state: Mutex<FakeState>,
    started: Instant,
    /// While true, `exec` waits after recording its call (a command that runs long).
    exec_held: Mutex<bool>,
    exec_released: Condvar,
    /// How many held commands ended because their client went away.
    exec_cancelled: std::sync::atomic::AtomicUsize,
}

struct FakeState {
    vm_state: VmState,
    capabilities: Capabilities,
    flush_counts: Vec<u64>,
    calls: Vec<Call>,
    fail_next: Option<BackendError>,
}

impl FakeBackend {
    /// A running fake VM with both machine-check capabilities (like KVM).
    pub fn new(platform: NvdimmPlatform) -> Self {
        let dimms = platform.dimms().len();
        FakeBackend {
            platform: Mutex::new(platform),
            state: Mutex::new(FakeState {
                vm_state: VmState::Running,
                capabilities: Capabilities { action_optional_machine_check: true, action_required_machine_check: true },
                flush_counts: vec![0; dimms],
                calls: Vec::new(),
                fail_next: None,
            }),
            started: Instant::now(),
            exec_held: Mutex::new(false),
            exec_released: Condvar::new(),
            exec_cancelled: Default::default(),
        }
    }

    /// An ephemeral copy of the built-in default platform (two 1 GiB DIMMs at 4 GiB and 5 GiB).
    pub fn with_default_platform() -> Self {
        let config = PlatformConfig::default_in(Path::new("/nonexistent"));
        let layout = PlatformLayout::packed(&config, 4 << 30, 1 << 30, 0xC010_0000, 0xD0000, 0xC000_0000);
        let platform = NvdimmPlatform::ephemeral(config, layout).expect("the default platform is valid");
        Self::new(platform)
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock_unpoisoned()
    }

    /// Like the QEMU TCG backend: no machine checks.
    pub fn set_capabilities(&self, capabilities: Capabilities) {
        self.state().capabilities = capabilities;
    }

    pub fn set_flush_counts(&self, counts: Vec<u64>) {
        self.state().flush_counts = counts;
    }

    /// The next backend call (other than `info`, `platform`, `flush_counts`) fails with `error`.
    pub fn fail_next(&self, error: BackendError) {
        self.state().fail_next = Some(error);
    }

    /// From now on `exec` records its call, then waits until [`FakeBackend::release_exec`].
    pub fn hold_exec(&self) {
        *self.exec_held.lock_unpoisoned() = true;
    }

    /// Lets every held and future `exec` finish.
    pub fn release_exec(&self) {
        *self.exec_held.lock_unpoisoned() = false;
        self.exec_released.notify_all();
    }

    /// How many held commands were cancelled (their client went away).
    pub fn exec_cancelled(&self) -> usize {
        self.exec_cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    fn record(&self, call: Call) -> Result<(), BackendError> {
        let mut state = self.state();
        if let Some(e) = state.fail_next.take() {
            return Err(e);
        }
        state.calls.push(call);
        Ok(())
    }

    /// The platform, locked (to play the guest: `call_dsm`, ...).
    pub fn platform_lock(&self) -> MutexGuard<'_, NvdimmPlatform> {
        self.platform.lock_unpoisoned()
    }

    /// A copy of the platform's configuration.
    pub fn platform_config(&self) -> PlatformConfig {
        self.platform_lock().config().clone()
    }
}

impl Backend for FakeBackend {
    fn info(&self) -> VmInfo {
        let state = self.state();
        VmInfo {
            backend: "fake".to_string(),
            state: state.vm_state,
            memory_bytes: 512 << 20,
            cpus: 1,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            capabilities: state.capabilities,
        }
    }

    fn platform(&self) -> &Mutex<NvdimmPlatform> {
        &self.platform
    }

    fn raise_notifications(&self) -> Result<(), BackendError> {
        if let Some(e) = self.state().fail_next.take() {
            return Err(e);
        }
        let mut platform = self.platform_lock();
        let pending = platform.take_notifications();
        for n in &pending {
            platform.log_event(EventKind::Notify(*n));
        }
        drop(platform);
        self.record(Call::RaiseNotifications(pending))
    }

    fn machine_check(&self, gpa: u64, kind: MachineCheckKind) -> Result<(), BackendError> {
        self.record(Call::MachineCheck { gpa, kind })?;
        self.platform_lock().log_event(EventKind::MachineCheck { gpa, kind, delivered: true });
        Ok(())
    }

    fn poison_changed(&self, dimm: usize) -> Result<(), BackendError> {
        self.record(Call::PoisonChanged(dimm))
    }

    fn flush_counts(&self) -> Vec<u64> {
        self.state().flush_counts.clone()
    }

    fn power_off(&self) -> Result<(), BackendError> {
        if self.state().vm_state == VmState::Stopped {
            return Err(BackendError::Conflict("the VM is already stopped".to_string()));
        }
        self.record(Call::PowerOff)?;
        self.state().vm_state = VmState::Stopped;
        self.platform_lock().log_event(EventKind::PowerOff { reason: "control API".to_string() });
        Ok(())
    }

    /// Answers without a guest: status 0 and `fake: COMMAND` as the output. While
    /// held, a cancelled command ends as the real agent ends it.
    fn exec(&self, command: &str, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Result<ExecOutput, BackendError> {
        self.record(Call::Exec { command: command.to_string(), timeout_secs: timeout.as_secs() })?;
        let mut held = self.exec_held.lock_unpoisoned();
        while *held {
            if cancelled() {
                self.exec_cancelled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return Err(BackendError::Cancelled("the client went away; the command was killed".into()));
            }
            held = self
                .exec_released
                .wait_timeout(held, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        drop(held);
        Ok(ExecOutput { status: 0, output: format!("fake: {command}\n") })
    }
}
