//! Can this host's KVM run a real operating system? Checked by running a few
//! instructions in a throw-away VM before any guest is built.
//!
//! Linux needs the CPU to deliver exceptions to a long-mode guest and to return from
//! them. KVM without VMX/SVM (the `kvm_pvm` module on the project's cloud machines) runs
//! unmodified guests in its instruction emulator, which gets only part of the way: measured
//! there, with a valid IDT and TSS a `ud2` reaches its #UD handler and `iretq` returns, but
//! an `int3` ends in KVM_EXIT_INTERNAL_ERROR (and Linux uses `int3` for text patching). The probe enters long mode
//! with KVM_SET_SREGS and walks through exactly those steps, each reporting on its own
//! port (see `probe_program`); the host is usable only if every step completes.
//!
//! How the VMM uses it:
//! ```ignore
//! // --backend kvm: refuse early with a message that names --backend tcg.
//! let caps = vnvdimm_vmm::kvm_check::check()?;
//! // --backend auto: KVM where it works, TCG otherwise.
//! let use_kvm = vnvdimm_vmm::kvm_check::probe().is_ok_and(|c| c.can_run_linux());
//! // Also useful: caps.mce_banks, caps.nr_memslots (the limit for memslots::PoisonSlots).
//! ```

pub mod longmode;

use std::fmt;
use std::io;
use std::sync::mpsc;
use std::time::Duration;

use kvm_ioctls::{Cap, Kvm};
use thiserror::Error;

use longmode::{asm, Exit, LongModeSetup, LongModeVm, EFER_LMA};

/// Port the main program writes first (proves it runs, in long mode).
pub const START_PORT: u16 = 0x0510;
/// Port the #UD handler writes.
pub const UD_HANDLER_PORT: u16 = 0x0511;
/// Port the main program writes after the #UD handler's `iretq` came back.
pub const RETURNED_PORT: u16 = 0x0512;
/// Port the #BP (`int3`) handler writes.
pub const BP_HANDLER_PORT: u16 = 0x0513;
/// Port the main program writes at the end.
pub const DONE_PORT: u16 = 0x0514;
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
        "this host's KVM cannot deliver exceptions to a long-mode guest the way Linux needs (probe: {outcome}; \
         CPU virtualization flags: {virt}): without VMX/SVM, KVM runs guests in its instruction emulator, \
         so Linux cannot boot under KVM here; use --backend tcg"
    )]
    NoExceptionDelivery {
        outcome: ExceptionProbe,
        virt: CpuVirtualization,
    },
}

/// How far the probe program got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionProbe {
    /// Every step: #UD delivered, `iretq` back, `int3` delivered and returned.
    Works,
    /// The `ud2` never reached its handler.
    NotDelivered(Failure),
    /// The #UD handler ran but its `iretq` did not return.
    NoIret(Failure),
    /// #UD and `iretq` worked, `int3` did not.
    NoInt3(Failure),
    /// `ud2` did not fault at all.
    NotRaised,
    /// The program never reported running in long mode.
    NotInLongMode,
    /// No verdict within the time limit.
    TimedOut,
}

impl fmt::Display for ExceptionProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExceptionProbe::Works => write!(f, "#UD and #BP delivered, iretq returned"),
            ExceptionProbe::NotDelivered(e) => {
                write!(f, "ud2 never reached its #UD handler, ended in {e}")
            }
            ExceptionProbe::NoIret(e) => {
                write!(f, "ud2 reached its #UD handler, but its iretq ended in {e}")
            }
            ExceptionProbe::NoInt3(e) => write!(f, "#UD and iretq worked, but int3 ended in {e}"),
            ExceptionProbe::NotRaised => write!(f, "ud2 did not fault"),
            ExceptionProbe::NotInLongMode => write!(
                f,
                "the program never ran: the vCPU did not start in long mode"
            ),
            ExceptionProbe::TimedOut => write!(f, "no answer within {} s", PROBE_TIMEOUT.as_secs()),
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
        self.exceptions == ExceptionProbe::Works
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

/// The bare-metal program. Each step reports on its own port, so the exits show how far
/// it got: start, `ud2` (#UD handler reports, skips the `ud2`, `iretq`), back in the main
/// program, `int3` (#BP handler reports, `iretq`), done.
pub fn probe_program() -> ProbeProgram {
    let mut code = asm::out8(START_PORT, 1);
    code.extend_from_slice(&asm::UD2);
    code.extend(asm::out8(RETURNED_PORT, 1));
    code.extend_from_slice(&asm::INT3);
    code.extend(asm::out8(DONE_PORT, 1));
    code.extend_from_slice(&asm::HLT);
    let mut ud_handler = asm::out8(UD_HANDLER_PORT, 1);
    ud_handler.extend(asm::skip_on_return(asm::UD2.len() as u8));
    ud_handler.extend_from_slice(&asm::IRETQ);
    let mut bp_handler = asm::out8(BP_HANDLER_PORT, 1);
    bp_handler.extend_from_slice(&asm::IRETQ);
    ProbeProgram {
        code,
        ud_handler,
        bp_handler,
    }
}

pub struct ProbeProgram {
    pub code: Vec<u8>,
    pub ud_handler: Vec<u8>,
    pub bp_handler: Vec<u8>,
}

fn probe_exceptions(kvm: Kvm) -> Result<(ExceptionProbe, Vec<Exit>), KvmCheckError> {
    let program = probe_program();
    let handlers: [(u8, &[u8]); 2] = [
        (longmode::VECTOR_UD, &program.ud_handler),
        (longmode::VECTOR_BP, &program.bp_handler),
    ];
    let mut vm = LongModeVm::new(
        &kvm,
        &LongModeSetup {
            code: &program.code,
            handlers: &handlers,
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

/// How a step that did not complete ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// KVM_EXIT_SHUTDOWN: a triple fault.
    Shutdown,
    /// KVM_EXIT_INTERNAL_ERROR: the instruction emulator gave up.
    InternalError,
    /// KVM_EXIT_FAIL_ENTRY with the hardware reason.
    EntryFailed(u64),
    /// Some other exit, or none before the exit budget ran out.
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Shutdown => write!(f, "KVM_EXIT_SHUTDOWN"),
            Failure::InternalError => write!(f, "KVM_EXIT_INTERNAL_ERROR"),
            Failure::EntryFailed(r) => write!(f, "KVM_EXIT_FAIL_ENTRY (reason {r:#x})"),
            Failure::Other(s) => write!(f, "{s}"),
        }
    }
}

/// The verdict from the exits after the start marker.
pub fn classify_exits(exits: &[Exit]) -> ExceptionProbe {
    let seen = |port: u16| {
        exits
            .iter()
            .any(|e| matches!(e, Exit::IoOut { port: p, .. } if *p == port))
    };
    let failure = || match exits.last() {
        Some(Exit::Shutdown) => Failure::Shutdown,
        Some(Exit::InternalError) => Failure::InternalError,
        Some(Exit::FailEntry { reason }) => Failure::EntryFailed(*reason),
        other => Failure::Other(format!("{other:?}")),
    };
    if !seen(UD_HANDLER_PORT) {
        if seen(RETURNED_PORT) {
            return ExceptionProbe::NotRaised;
        }
        return ExceptionProbe::NotDelivered(failure());
    }
    if !seen(RETURNED_PORT) {
        return ExceptionProbe::NoIret(failure());
    }
    if !seen(BP_HANDLER_PORT) || !seen(DONE_PORT) {
        return ExceptionProbe::NoInt3(failure());
    }
    ExceptionProbe::Works
}

#[cfg(test)]
mod tests;
