//! How a guest run ended, on either backend, and the process exit status that stands
//! for it (`exit_status`).

use crate::exit_status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// The guest reset: the ACPI reset register, 0xCF9, a reboot, or (under QEMU, which
    /// runs with `-no-reboot`) a panic with `panic=N` or a triple fault.
    Reset,
    /// A bare-metal program wrote this code to the debug exit port (KVM selftest only).
    DebugExit(u8),
    /// The guest cannot continue: a kernel panic reported through pvpanic, a triple
    /// fault, an emulation failure, `hlt` with no interrupt source.
    Crashed(String),
    /// The host stopped it: the API's power-off under QEMU, a signal to QEMU, a timeout.
    HostStopped(String),
    /// The backend itself failed (QEMU: a bad option, a missing file, a crash).
    BackendFailed(String),
}

impl GuestOutcome {
    /// Clean ends are 0, a crash is `GUEST_CRASHED`, a failed backend `FAILURE`; a
    /// debug exit passes its code through.
    pub fn exit_status(&self) -> u8 {
        match self {
            GuestOutcome::PowerOff | GuestOutcome::Reset | GuestOutcome::HostStopped(_) => exit_status::OK,
            GuestOutcome::DebugExit(code) => *code,
            GuestOutcome::Crashed(_) => exit_status::GUEST_CRASHED,
            GuestOutcome::BackendFailed(_) => exit_status::FAILURE,
        }
    }
}

impl std::fmt::Display for GuestOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestOutcome::PowerOff => write!(f, "guest powered off"),
            GuestOutcome::Reset => write!(f, "guest reset"),
            GuestOutcome::DebugExit(code) => write!(f, "guest exited with code {code} through the debug port"),
            GuestOutcome::Crashed(why) => write!(f, "guest crashed: {why}"),
            GuestOutcome::HostStopped(why) => write!(f, "stopped by the host ({why})"),
            GuestOutcome::BackendFailed(why) => write!(f, "QEMU failed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_its_exit_status() {
        assert_eq!(GuestOutcome::PowerOff.exit_status(), exit_status::OK);
        assert_eq!(GuestOutcome::Reset.exit_status(), exit_status::OK);
        assert_eq!(GuestOutcome::HostStopped("api".into()).exit_status(), exit_status::OK);
        assert_eq!(GuestOutcome::DebugExit(7).exit_status(), 7);
        assert_eq!(GuestOutcome::Crashed("x".into()).exit_status(), exit_status::GUEST_CRASHED);
        assert_eq!(GuestOutcome::BackendFailed("x".into()).exit_status(), exit_status::FAILURE);
        assert_eq!(GuestOutcome::Crashed("kernel panic (pvpanic)".into()).to_string(), "guest crashed: kernel panic (pvpanic)");
    }
}
