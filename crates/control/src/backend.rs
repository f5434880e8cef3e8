//! What a VMM backend (KVM, QEMU TCG) provides to the control API. The API server
//! changes the device model itself (poison, health, ARS rate) through
//! [`Backend::platform`], and asks the backend for the things only the backend can do:
//! raise ACPI notifications, deliver machine checks, re-plan guest memory, power off.
//!
//! Locking rule: the server never holds the platform lock while it calls another
//! `Backend` method, so a backend may lock the platform inside any of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvdimm_model::event_log::MachineCheckKind;
use nvdimm_model::NvdimmPlatform;
use serde::{Deserialize, Serialize};

/// Why a backend could not do what the API asked. The server turns each kind into an
/// HTTP status: `Unsupported` 501, `Conflict` 409, `Failed` and `FailedWith` 500.
#[derive(Debug, Clone)]
pub enum BackendError {
    /// This backend cannot do it at all (e.g. machine checks under QEMU TCG).
    Unsupported(String),
    /// Not possible in the VM's current state (e.g. the guest has already stopped).
    Conflict(String),
    /// It should have worked but did not, with nothing underneath to chain.
    Failed(String),
    /// It should have worked but did not, because of `source` (an ioctl, I/O, QMP or
    /// agent error), which stays reachable through `Error::source`. Shared so the
    /// error stays cloneable, which is why Display and Error are written out below.
    FailedWith { context: String, source: Arc<dyn std::error::Error + Send + Sync> },
    /// Stopped on purpose before it finished (a guest command whose client went away).
    Cancelled(String),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Unsupported(m) => write!(f, "not supported by this backend: {m}"),
            BackendError::Conflict(m) | BackendError::Failed(m) | BackendError::Cancelled(m) => f.write_str(m),
            BackendError::FailedWith { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The cause itself, not the Arc around it, so callers can downcast it.
            BackendError::FailedWith { source, .. } => Some(&**source as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}

impl BackendError {
    /// A failure caused by `source`, described by `context` (what was being done).
    pub fn failed(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        BackendError::FailedWith { context: context.into(), source: Arc::new(source) }
    }
}

/// Equal when of the same kind with the same message (a source compares by its text).
impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other) && self.to_string() == other.to_string()
    }
}

impl Eq for BackendError {}

/// Life cycle of the guest as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Set up, first guest instruction not yet run.
    Created,
    Running,
    /// A power-off was requested; the guest has not stopped yet.
    ShuttingDown,
    Stopped,
}

/// What a backend can do, so the API refuses a request before changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Can deliver an action-optional (patrol scrub, SRAO) machine check on request.
    pub action_optional_machine_check: bool,
    /// Delivers action-required machine checks when the guest consumes poison.
    pub action_required_machine_check: bool,
}

/// Facts about the VM that only the backend knows (the rest comes from the platform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    /// `kvm`, `tcg`, or `fake` in tests.
    pub backend: String,
    pub state: VmState,
    /// Guest RAM in bytes (NVDIMM windows not included).
    pub memory_bytes: u64,
    pub cpus: u32,
    /// Milliseconds since the VM was created.
    pub uptime_ms: u64,
    pub capabilities: Capabilities,
}

/// A command the guest agent ran: `POST /exec`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// The command's exit status (137 when the guest killed it at its timeout).
    pub status: i32,
    /// Its stdout and stderr, interleaved as written; bytes that are not UTF-8 become U+FFFD.
    pub output: String,
}

/// Implemented by each VMM backend and handed to [`crate::ApiServer::start`].
pub trait Backend: Send + Sync {
    /// Current facts for `GET /vm`. Must be cheap; called on every `GET /vm` and `GET /dimms`.
    fn info(&self) -> VmInfo;

    /// The device model the vCPUs use. The server locks it for each model change.
    fn platform(&self) -> &Mutex<NvdimmPlatform>;

    /// Delivers every pending notification (`platform.take_notifications()`) to the guest
    /// as ACPI `Notify`, logging each as `EventKind::Notify`. Called after the API queued
    /// some (new poison with `notify`, health changes).
    fn raise_notifications(&self) -> Result<(), BackendError>;

    /// Delivers a machine check of `kind` for guest physical address `gpa` to the guest
    /// and logs it as `EventKind::MachineCheck`. Only called for kinds the backend's
    /// [`Capabilities`] claim.
    fn machine_check(&self, gpa: u64, kind: MachineCheckKind) -> Result<(), BackendError>;

    /// The poison of DIMM `dimm` changed (added or cleared by the host). KVM takes newly
    /// poisoned pages out of the guest's memory slots and gives cleared ones back.
    fn poison_changed(&self, dimm: usize) -> Result<(), BackendError>;

    /// Flush-hint writes served so far, one count per DIMM in platform order.
    fn flush_counts(&self) -> Vec<u64>;

    /// Stops the guest (like pulling the power; the VMM then exits as it does when the
    /// guest powers off) and logs `EventKind::PowerOff`. May return before the guest has
    /// stopped: `info().state` says `shutting_down` until then.
    fn power_off(&self) -> Result<(), BackendError>;

    /// Runs `command` with `sh` in the guest through the guest agent (docs/guest-agent.md)
    /// and returns its status and output; the guest kills it after `timeout`, or as soon
    /// as `cancelled()` is true (its client went away: [`BackendError::Cancelled`]).
    /// Backends without an agent channel keep this default.
    fn exec(&self, command: &str, timeout: Duration, cancelled: &dyn Fn() -> bool) -> Result<ExecOutput, BackendError> {
        let _ = (command, timeout, cancelled);
        Err(BackendError::Unsupported("running guest commands: this backend has no guest agent channel".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_failure_keeps_its_cause_reachable_and_in_its_message() {
        let cause = std::io::Error::new(std::io::ErrorKind::InvalidInput, "KVM_SET_USER_MEMORY_REGION: EINVAL");
        let e = BackendError::failed("re-planning the NVDIMM memory slots failed", cause);
        assert_eq!(e.to_string(), "re-planning the NVDIMM memory slots failed: KVM_SET_USER_MEMORY_REGION: EINVAL");
        let source = e.source().expect("the cause is chained");
        assert_eq!(source.downcast_ref::<std::io::Error>().map(|io| io.kind()), Some(std::io::ErrorKind::InvalidInput));
        assert_eq!(e.clone(), e, "clones compare equal");
        assert_ne!(e, BackendError::Failed(e.to_string()), "a different kind is a different error");
    }
}
