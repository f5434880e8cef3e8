//! The control API's [`Backend`] for a TCG guest. What QEMU TCG cannot do the way KVM
//! does is done the closest honest way (docs/tcg-backend.md, fidelity table):
//! notifications reach the guest within one poll of the event thermal zone, machine
//! checks go through QEMU's monitor (`mce`), flush hint stores are not seen at all.

use nvdimm_model::sync::LockUnpoisoned;
use std::sync::Mutex;
use std::time::Duration;

use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::NvdimmPlatform;
use vnvdimm_agent::AgentError;
use vnvdimm_control::{Backend, BackendError, Capabilities, ExecOutput, VmInfo, VmState};

use crate::poller::post_notifications;
use crate::vm::TcgVm;

/// The machine-check bank Linux's handler reads for memory errors (QEMU's qemu64 has 10).
pub const MCE_BANK: u32 = 9;
/// MCi_MISC: physical address mode, 4 KiB granularity.
pub const MCE_MISC: u64 = 0x8c;
/// SRAO (patrol scrub found it): VAL|UC|EN|MISCV|ADDRV|S, MCACOD 0xC0.
pub const SRAO_STATUS: u64 = 0xBD00_0000_0000_00C0;
/// MCG_STATUS for SRAO: MCIP|RIPV.
pub const SRAO_MCG_STATUS: u64 = 0x5;

/// The HMP line that injects an action-optional machine check for `gpa` on CPU 0.
pub fn srao_hmp_command(gpa: u64) -> String {
    format!("mce 0 {MCE_BANK} {SRAO_STATUS:#x} {SRAO_MCG_STATUS:#x} {gpa:#x} {MCE_MISC:#x}")
}

/// What TCG can do: an action-optional machine check on request, but no
/// action-required one at the consuming load (TCG has no poisoned pages to trap on;
/// an SRAR injected at an arbitrary instruction is graded fatal by Linux).
pub const TCG_CAPABILITIES: Capabilities =
    Capabilities { action_optional_machine_check: true, action_required_machine_check: false };

impl TcgVm {
    fn running(&self) -> Result<(), BackendError> {
        match self.state() {
            VmState::Stopped => Err(BackendError::Conflict("the guest has stopped".into())),
            _ => Ok(()),
        }
    }
}

impl Backend for TcgVm {
    fn info(&self) -> VmInfo {
        VmInfo {
            backend: "tcg".into(),
            state: self.state(),
            memory_bytes: self.memory_bytes,
            cpus: self.spec_cpus,
            uptime_ms: u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX),
            capabilities: TCG_CAPABILITIES,
        }
    }

    fn platform(&self) -> &Mutex<NvdimmPlatform> {
        &self.platform
    }

    /// Increments the mailbox notification counters now (the poller would within 10 ms); the
    /// guest's event thermal zone runs `\_SB.NVDR.NEVT` within half a second.
    fn raise_notifications(&self) -> Result<(), BackendError> {
        self.running()?;
        post_notifications(&self.mailbox, &self.platform);
        Ok(())
    }

    fn machine_check(&self, gpa: u64, kind: MachineCheckKind) -> Result<(), BackendError> {
        if kind == MachineCheckKind::ActionRequired {
            return Err(BackendError::Unsupported(
                "action-required machine checks under QEMU TCG: TCG cannot trap the load that consumes \
                 poison, and one injected at an arbitrary instruction is fatal to Linux; use action_optional"
                    .into(),
            ));
        }
        self.running()?;
        let line = srao_hmp_command(gpa);
        let out = self.qmp.hmp(&line).map_err(|e| BackendError::failed(format!("QEMU monitor `{line}`"), e))?;
        // HMP reports refusals as text, not as a QMP error.
        if !out.trim().is_empty() {
            return Err(BackendError::Failed(format!("QEMU monitor `{line}`: {}", out.trim())));
        }
        let mut platform = self.platform.lock_unpoisoned();
        platform.log_event(EventKind::MachineCheck { gpa, kind, delivered: true });
        Ok(())
    }

    /// Nothing to re-plan: under TCG guest memory is QEMU's mapping of the backing
    /// files, with no per-page holes; poisoned pages stay readable by the guest.
    fn poison_changed(&self, _dimm: usize) -> Result<(), BackendError> {
        Ok(())
    }

    /// TCG drops stores to the flush hint pages (no device there): nothing to count.
    fn flush_counts(&self) -> Vec<u64> {
        let platform = self.platform.lock_unpoisoned();
        vec![0; platform.dimms().len()]
    }

    fn power_off(&self) -> Result<(), BackendError> {
        self.running()?;
        self.mark_shutting_down();
        {
            let mut platform = self.platform.lock_unpoisoned();
            platform.log_event(EventKind::PowerOff { reason: "control API power_off (QMP quit)".into() });
        }
        match self.qmp.execute("quit", None) {
            Ok(_) | Err(crate::qmp::QmpError::Closed) => Ok(()),
            Err(e) => Err(BackendError::failed("QMP quit", e)),
        }
    }

    /// Through the guest agent on ttyS2; the first call waits for the agent to come up
    /// (the guest may still be booting).
    fn exec(&self, command: &str, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Result<ExecOutput, BackendError> {
        let Some(agent) = &self.agent else {
            return Err(BackendError::Unsupported("running guest commands: this VM was started without the agent's serial port".into()));
        };
        self.running()?;
        let out = agent.lock_unpoisoned().exec(command, timeout, cancelled).map_err(|e| self.agent_failure(e))?;
        Ok(ExecOutput { status: out.status, output: out.text() })
    }
}

/// How long the first guest command waits for the agent: boot under TCG takes ~5 s.
pub const AGENT_READY_WAIT: Duration = Duration::from_secs(120);

impl TcgVm {
    fn agent_failure(&self, e: AgentError) -> BackendError {
        match (&e, self.state()) {
            (_, VmState::Stopped | VmState::ShuttingDown) => {
                BackendError::Conflict(format!("the guest has stopped or is stopping: {e}"))
            }
            (AgentError::NotReady(_), _) => BackendError::failed(
                "the guest agent did not answer (the image's init starts it on ttyS2; a guest booted with \
                 vnv.agent=off, another initramfs, or one that already powered off has none)",
                e,
            ),
            (AgentError::Cancelled { .. }, _) => BackendError::Cancelled(e.to_string()),
            _ => BackendError::failed("guest command", e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srao_command_uses_the_spec_values() {
        assert_eq!(srao_hmp_command(0x4000_1000), "mce 0 9 0xbd000000000000c0 0x5 0x40001000 0x8c");
    }
}
