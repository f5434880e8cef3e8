//! The control API's `Backend` for a KVM VM (`vnvdimm run --backend kvm`, and the
//! bare-metal harness so tests can drive the API while a guest runs).
//!
//! Threads: the API thread calls these methods while the vCPU thread is inside
//! `run_loop::run`. Everything that needs the `VcpuFd` (machine checks, power-off) is
//! queued through `VcpuControl` and served by the vCPU thread before its next KVM_RUN;
//! `machine_check` waits (up to `DELIVERY_TIMEOUT`) until it was served, so the
//! `MachineCheck` event is in the log when the API answers. Memslot changes
//! (`poison_changed`) are made directly from the API thread: KVM allows
//! KVM_SET_USER_MEMORY_REGION while a vCPU runs (see pmem_slots.rs).

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::event_log::MachineCheckKind;
use nvdimm_model::NvdimmPlatform;
use vnvdimm_agent::{AgentClient, AgentError, AgentLink};
use vnvdimm_control::backend::{Backend, BackendError, Capabilities, ExecOutput, VmInfo, VmState};

use crate::devices::flush_hint::FlushCounters;
use crate::devices::notifications::NotificationPath;
use crate::memory::pmem_slots::PmemSlots;
use crate::vcpu::vcpu_control::{Request, RunState, VcpuControl};
use crate::vm::Vm;

/// How long `machine_check` waits for the vCPU thread to inject it.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the first guest command waits for the agent (a Linux boot under KVM).
pub const AGENT_READY_WAIT: Duration = Duration::from_secs(300);

pub struct KvmBackend {
    platform: Arc<Mutex<NvdimmPlatform>>,
    pmem: Arc<PmemSlots>,
    control: Arc<VcpuControl>,
    notifications: NotificationPath,
    flushes: Arc<FlushCounters>,
    memory_bytes: u64,
    cpus: u32,
    machine_checks: bool,
    /// The guest CPU's machine-check conventions (AMD has no action-optional #MC).
    mca_vendor: crate::arch::x86_64::mce::McaVendor,
    started: Instant,
    /// None when the VM's agent line was already taken (or could not be split).
    agent: Option<Mutex<AgentLink>>,
}

impl KvmBackend {
    /// Shares `vm`'s devices; build it before the vCPU thread takes the VM.
    pub fn new(vm: &Vm) -> Self {
        KvmBackend {
            platform: vm.platform.clone(),
            pmem: vm.pmem.clone(),
            control: vm.control.clone(),
            notifications: NotificationPath::of(vm),
            flushes: vm.stats.flushes.clone(),
            memory_bytes: vm.machine.config.memory,
            cpus: u32::from(vm.machine.config.cpus),
            machine_checks: vm.mce.is_ok(),
            mca_vendor: vm.mca_vendor,
            started: Instant::now(),
            agent: agent_link(vm),
        }
    }

    fn stopped(&self) -> bool {
        matches!(self.control.state(), RunState::Stopped)
    }

    fn agent_failure(&self, e: AgentError) -> BackendError {
        if matches!(self.control.state(), RunState::Stopped | RunState::ShuttingDown) {
            return BackendError::Conflict(format!("the guest has stopped or is stopping: {e}"));
        }
        match e {
            AgentError::NotReady(_) => BackendError::failed(
                "the guest agent did not answer (the image's init starts it on ttyS2 (COM3, 0x3e8); a guest \
                 booted with vnv.agent=off, another initramfs, or a bare-metal program has none)",
                e,
            ),
            AgentError::Cancelled { .. } => BackendError::Cancelled(e.to_string()),
            e => BackendError::failed("guest command", e),
        }
    }
}

impl Backend for KvmBackend {
    fn info(&self) -> VmInfo {
        let state = match self.control.state() {
            RunState::Created => VmState::Created,
            RunState::Running => VmState::Running,
            RunState::ShuttingDown => VmState::ShuttingDown,
            RunState::Stopped => VmState::Stopped,
        };
        VmInfo {
            backend: "kvm".to_string(),
            state,
            memory_bytes: self.memory_bytes,
            cpus: self.cpus,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            capabilities: Capabilities {
                // Checked by the API before anything is recorded, so a refused request
                // changes nothing.
                action_optional_machine_check: self.machine_checks
                    && crate::arch::x86_64::mce::unsupported_for(self.mca_vendor, MachineCheckKind::ActionOptional).is_none(),
                action_required_machine_check: self.machine_checks,
            },
        }
    }

    fn platform(&self) -> &Mutex<NvdimmPlatform> {
        &self.platform
    }

    /// Posts the pending notifications and pulses the GED (`notifications`).
    fn raise_notifications(&self) -> Result<(), BackendError> {
        self.notifications.deliver(&self.platform).map(|_| ()).map_err(|e| BackendError::failed("raising the ACPI notifications", e))
    }

    fn machine_check(&self, gpa: u64, kind: MachineCheckKind) -> Result<(), BackendError> {
        if !self.machine_checks {
            return Err(BackendError::Unsupported("this host's KVM cannot emulate machine checks".into()));
        }
        if let Some(why) = crate::arch::x86_64::mce::unsupported_for(self.mca_vendor, kind) {
            return Err(BackendError::Unsupported(why.into()));
        }
        let ticket = self.control.request(Request::MachineCheck { gpa, kind }).map_err(|_| {
            BackendError::Conflict("the guest has stopped: there is no vCPU to deliver a machine check to".into())
        })?;
        if !self.control.wait_served(ticket, DELIVERY_TIMEOUT) && self.control.state() == RunState::Stopped {
            return Err(BackendError::Conflict(
                "the guest stopped before the machine check could be delivered".into(),
            ));
        }
        Ok(())
    }

    fn poison_changed(&self, _dimm: usize) -> Result<(), BackendError> {
        self.pmem
            .sync(&self.platform)
            .map(|_| ())
            .map_err(|e| BackendError::failed("re-planning the NVDIMM memory slots failed", e))
    }

    fn flush_counts(&self) -> Vec<u64> {
        self.flushes.all()
    }

    /// Queues the power-off; the vCPU thread logs `PowerOff` and ends the run with
    /// `GuestOutcome::PowerOff` (exit status 0) before its next KVM_RUN.
    fn power_off(&self) -> Result<(), BackendError> {
        if matches!(self.control.state(), RunState::ShuttingDown | RunState::Stopped) {
            return Err(BackendError::Conflict("the VM is already stopped or stopping".into()));
        }
        self.control
            .request(Request::PowerOff)
            .map(|_| ())
            .map_err(|_| BackendError::Conflict("the VM is already stopped".into()))
    }

    /// Through the guest agent on COM3; the first call waits for the agent to come up
    /// (the guest may still be booting). 409 once the guest stopped.
    fn exec(&self, command: &str, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Result<ExecOutput, BackendError> {
        if self.stopped() {
            return Err(BackendError::Conflict("the guest has stopped".into()));
        }
        let Some(agent) = &self.agent else {
            return Err(BackendError::Unsupported(
                "running guest commands: this VM's agent line is used by another client".into(),
            ));
        };
        let out = agent.lock_unpoisoned().exec(command, timeout, cancelled).map_err(|e| self.agent_failure(e))?;
        Ok(ExecOutput { status: out.status, output: out.text() })
    }
}

/// An `AgentClient` on the VM's COM3 line, if its host end is still free.
fn agent_link(vm: &Vm) -> Option<Mutex<AgentLink>> {
    let host = vm.agent.take_host_end()?;
    let reader = match host.try_clone() {
        Ok(r) => r,
        Err(e) => {
            log::debug!("agent line not usable: {e}");
            return None;
        }
    };
    Some(Mutex::new(AgentLink::new(AgentClient::new(reader, host), AGENT_READY_WAIT)))
}
