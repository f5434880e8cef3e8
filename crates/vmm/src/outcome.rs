//! How a guest run ended, and the process exit status that stands for it.

use vnvdimm_control::exit_status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutcome {
    /// ACPI S5 through the sleep control register.
    PowerOff,
    /// ACPI reset register (or the 0xCF9 reset control).
    Reset,
    /// A bare-metal program wrote this code to the debug exit port.
    DebugExit(u8),
    /// The vCPU cannot continue: KVM_EXIT_SHUTDOWN, internal error, `hlt` with no interrupt source.
    Crashed(String),
}

impl GuestOutcome {
    /// Power off and reset are clean ends (0); a debug exit passes its code through.
    pub fn exit_status(&self) -> u8 {
        match self {
            GuestOutcome::PowerOff | GuestOutcome::Reset => exit_status::OK,
            GuestOutcome::DebugExit(code) => *code,
            GuestOutcome::Crashed(_) => exit_status::GUEST_CRASHED,
        }
    }
}

impl std::fmt::Display for GuestOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestOutcome::PowerOff => write!(f, "guest powered off"),
            GuestOutcome::Reset => write!(f, "guest reset"),
            GuestOutcome::DebugExit(code) => {
                write!(f, "guest exited with code {code} through the debug port")
            }
            GuestOutcome::Crashed(why) => write!(f, "guest crashed: {why}"),
        }
    }
}
