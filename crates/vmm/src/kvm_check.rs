//! Can this host's KVM run a real operating system? Checked by running a few
//! instructions in a throw-away VM before any guest is built.
//!
//! Linux needs the CPU to deliver exceptions and interrupts to a long-mode guest. KVM
//! without VMX/SVM (for example the `kvm_pvm` module on a cloud VM) runs unmodified
//! guests in its instruction emulator, which cannot: a divide by zero ends in
//! KVM_EXIT_SHUTDOWN. The probe enters long mode with KVM_SET_SREGS, divides by zero
//! and looks for the `out` of the #DE handler (see `longmode.rs` for the program).
//!
//! How the VMM uses it:
//! ```ignore
//! // --backend kvm: refuse early with a message that names --backend tcg.
//! let caps = vnvdimm_vmm::kvm_check::check()?;
//! // --backend auto: KVM where it works, TCG otherwise.
//! let use_kvm = vnvdimm_vmm::kvm_check::probe().is_ok_and(|c| c.can_run_linux());
//! // Also useful: caps.mce_banks, caps.nr_memslots (limit for memslots::PoisonSlots).
//! ```

pub(crate) mod longmode;

use std::fmt;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

use kvm_ioctls::{Cap, Kvm};
use thiserror::Error;

use longmode::{asm, Exit, LongModeSetup, LongModeVm, EFER_LMA};

/// Port the main program writes before the exception (proves it ran in long mode).
pub const START_PORT: u16 = 0x0510;
/// Port the #DE handler writes.
pub const HANDLER_PORT: u16 = 0x0511;
/// Port written if the divide did not fault at all.
pub const FALLTHROUGH_PORT: u16 = 0x0512;
/// The program takes a handful of exits; more means something loops.
const MAX_EXITS: usize = 16;
/// The emulator runs ~3.6 M instructions per second; the program is ~15 instructions.
/// The limit only guards against a wedged KVM_RUN.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum KvmCheckError {
    #[error("cannot open /dev/kvm ({0}); load the kvm module and let this user open /dev/kvm, or use --backend tcg")]
    Open(#[source] io::Error),
    #[error("KVM refused to set up the capability-check VM ({0}); use --backend tcg")]
    Setup(#[source] io::Error),
    #[error(
        "this host's KVM cannot deliver exceptions to a long-mode guest (the probe's divide by zero {outcome}; \
         CPU virtualization flags: {virt}): without VMX/SVM, KVM runs guests in its instruction emulator, \
         so Linux cannot boot under KVM here; use --backend tcg"
    )]
    NoExceptionDelivery {
        outcome: ExceptionProbe,
        virt: CpuVirtualization,
    },
}

/// What happened to the probe's divide by zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionProbe {
    /// The #DE handler ran: exceptions reach long-mode guests.
    Delivered,
    /// KVM_EXIT_SHUTDOWN: the exception turned into a triple fault.
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR: the emulator gave up.
    InternalError,
    /// KVM_EXIT_FAIL_ENTRY with the hardware reason.
    EntryFailed(u64),
    /// The divide completed without a fault.
    NotRaised,
    /// The program never reported running in long mode.
    NotInLongMode,
    /// No verdict within the time limit.
    TimedOut,
    /// Any other exit sequence.
    Unexpected(String),
}

impl fmt::Display for ExceptionProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExceptionProbe::Delivered => write!(f, "reached its #DE handler"),
            ExceptionProbe::Shutdown => write!(f, "ended in KVM_EXIT_SHUTDOWN"),
            ExceptionProbe::InternalError => write!(f, "ended in KVM_EXIT_INTERNAL_ERROR"),
            ExceptionProbe::EntryFailed(r) => {
                write!(f, "ended in KVM_EXIT_FAIL_ENTRY, reason {r:#x}")
            }
            ExceptionProbe::NotRaised => write!(f, "did not fault"),
            ExceptionProbe::NotInLongMode => {
                write!(f, "never ran: the vCPU did not start in long mode")
            }
            ExceptionProbe::TimedOut => {
                write!(f, "gave no answer within {} s", PROBE_TIMEOUT.as_secs())
            }
            ExceptionProbe::Unexpected(s) => write!(f, "gave unexpected exits: {s}"),
        }
    }
}

/// Hardware virtualization flags of the host CPU, from /proc/cpuinfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuVirtualization {
    Vmx,
    Svm,
    None,
    Unknown,
}

impl fmt::Display for CpuVirtualization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CpuVirtualization::Vmx => "vmx",
            CpuVirtualization::Svm => "svm",
            CpuVirtualization::None => "none (no vmx, no svm)",
            CpuVirtualization::Unknown => "unknown (/proc/cpuinfo unreadable)",
        })
    }
}

impl CpuVirtualization {
    pub fn from_host() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .map_or(CpuVirtualization::Unknown, |s| Self::from_cpuinfo(&s))
    }

    /// From the first `flags` line of a /proc/cpuinfo text.
    pub fn from_cpuinfo(text: &str) -> Self {
        let Some(flags) = text.lines().find(|l| l.starts_with("flags")) else {
            return CpuVirtualization::Unknown;
        };
        let mut words = flags
            .split_once(':')
            .map_or("", |(_, v)| v)
            .split_whitespace();
        let words: Vec<&str> = words.by_ref().collect();
        if words.contains(&"vmx") {
            CpuVirtualization::Vmx
        } else if words.contains(&"svm") {
            CpuVirtualization::Svm
        } else {
            CpuVirtualization::None
        }
    }

    pub fn present(self) -> bool {
        matches!(self, CpuVirtualization::Vmx | CpuVirtualization::Svm)
    }
}

#[derive(Debug, Clone)]
pub struct KvmCapabilities {
    pub api_version: i32,
    /// KVM_CAP_MCE: machine-check banks KVM can emulate per vCPU (0 = no MCE support).
    pub mce_banks: u32,
    /// KVM_CAP_NR_MEMSLOTS: memory slots per VM.
    pub nr_memslots: usize,
    pub exceptions: ExceptionProbe,
    pub cpu_virtualization: CpuVirtualization,
    /// Every exit the probe saw, for diagnostics.
    pub probe_exits: Vec<Exit>,
}

impl KvmCapabilities {
    /// Whether an unmodified Linux guest can run: it needs exception delivery.
    pub fn can_run_linux(&self) -> bool {
        self.exceptions == ExceptionProbe::Delivered
    }
}

/// Probes /dev/kvm and reports what it can do; only a host without usable KVM is an error.
pub fn probe() -> Result<KvmCapabilities, KvmCheckError> {
    let kvm = Kvm::new().map_err(|e| KvmCheckError::Open(e.into()))?;
    let api_version = kvm.get_api_version();
    let mce_banks = kvm.check_extension_int(Cap::Mce).max(0) as u32;
    let nr_memslots = kvm.get_nr_memslots();
    let (exceptions, probe_exits) = probe_exceptions(kvm)?;
    Ok(KvmCapabilities {
        api_version,
        mce_banks,
        nr_memslots,
        exceptions,
        cpu_virtualization: CpuVirtualization::from_host(),
        probe_exits,
    })
}

/// `probe`, and an error unless a long-mode guest can take exceptions (what `--backend kvm` needs).
pub fn check() -> Result<KvmCapabilities, KvmCheckError> {
    let caps = probe()?;
    if caps.can_run_linux() {
        Ok(caps)
    } else {
        Err(KvmCheckError::NoExceptionDelivery {
            outcome: caps.exceptions,
            virt: caps.cpu_virtualization,
        })
    }
}

/// The bare-metal program: report start, divide by zero, report if that fell through.
pub fn probe_program() -> (Vec<u8>, Vec<u8>) {
    let mut code = asm::out8(START_PORT, 1);
    code.extend_from_slice(&asm::DIVIDE_BY_ZERO);
    code.extend(asm::out8(FALLTHROUGH_PORT, 1));
    code.extend_from_slice(&asm::HLT);
    let mut handler = asm::out8(HANDLER_PORT, 0);
    handler.extend_from_slice(&asm::HLT);
    (code, handler)
}

fn probe_exceptions(kvm: Kvm) -> Result<(ExceptionProbe, Vec<Exit>), KvmCheckError> {
    let (code, handler) = probe_program();
    let mut vm = LongModeVm::new(
        &kvm,
        &LongModeSetup {
            code: &code,
            handler: &handler,
            cr4_mce: false,
        },
    )
    .map_err(KvmCheckError::Setup)?;
    let (tx, rx) = mpsc::channel();
    // KVM_RUN cannot be interrupted without signals the VMM may use for itself, so a
    // wedged probe is abandoned (the thread keeps the throw-away VM until it returns).
    std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let result = run_probe(&mut vm);
            let _ = tx.send(result);
        })
        .map_err(KvmCheckError::Setup)?;
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(result) => result.map_err(KvmCheckError::Setup),
        Err(_) => Ok((ExceptionProbe::TimedOut, Vec::new())),
    }
}

fn run_probe(vm: &mut LongModeVm) -> io::Result<(ExceptionProbe, Vec<Exit>)> {
    let first = longmode::run_once(&mut vm.vcpu)?;
    let in_long_mode = vm
        .vcpu
        .get_sregs()
        .map(|s| s.efer & EFER_LMA != 0)
        .unwrap_or(false);
    if !in_long_mode
        || !matches!(
            &first,
            Exit::IoOut {
                port: START_PORT,
                ..
            }
        )
    {
        return Ok((ExceptionProbe::NotInLongMode, vec![first]));
    }
    let mut exits = vec![first];
    exits.extend(longmode::run_until_final(&mut vm.vcpu, MAX_EXITS)?);
    Ok((classify_exits(&exits[1..]), exits))
}

/// The verdict from the exits after the start marker.
pub fn classify_exits(exits: &[Exit]) -> ExceptionProbe {
    for exit in exits {
        match exit {
            Exit::IoOut {
                port: HANDLER_PORT, ..
            } => return ExceptionProbe::Delivered,
            Exit::IoOut {
                port: FALLTHROUGH_PORT,
                ..
            } => return ExceptionProbe::NotRaised,
            Exit::Shutdown => return ExceptionProbe::Shutdown,
            Exit::InternalError => return ExceptionProbe::InternalError,
            Exit::FailEntry { reason } => return ExceptionProbe::EntryFailed(*reason),
            _ => {}
        }
    }
    ExceptionProbe::Unexpected(format!("{exits:?}"))
}

#[cfg(test)]
mod tests;
