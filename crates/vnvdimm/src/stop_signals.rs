//! Ctrl-C, `kill` and a closed terminal stop the guest the way `vnvdimm ctl power-off`
//! does, so the VMM lives on to close the DIMMs cleanly: the guest's stores are all in
//! the backing files' page cache, so the next start must not count an unsafe shutdown.
//!
//! `main` blocks SIGINT, SIGTERM and SIGHUP before any thread exists (every thread
//! inherits the mask; `std::process::Command` clears it again for QEMU). Once a VM runs,
//! [`forward_to`] adds a signalfd for them to the VM's host I/O loop
//! (vnvdimm_vmm::signal_source): the first powers the VM off; a second one ends the
//! process at once, like the default action. Where the signals are not blocked (tests
//! calling `cli::run` in-process) nothing is added and the signals keep their usual effect.

use std::io::Write;

use vnvdimm_vmm::host_io::HostIo;
use vnvdimm_vmm::signal_source::SignalSource;

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in STOP_SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks the stop signals in the calling thread and the threads it starts later.
/// Call first thing in `main`.
pub fn block_in_main() {
    let set = stop_set();
    // SAFETY: a valid set; failure leaves the default actions, which is still safe.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Whether this thread has every stop signal blocked (only then does a signalfd get them:
/// an unblocked signal runs its default action, ending the process, instead).
fn blocked_here() -> bool {
    // SAFETY: queries the calling thread's mask into a local set.
    unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current) != 0 {
            return false;
        }
        STOP_SIGNALS.iter().all(|&sig| libc::sigismember(&current, sig) == 1)
    }
}

/// The result of a power-off asked for by a stop signal: a VM already stopping (QEMU
/// got the terminal's Ctrl-C too, or the guest powered off meanwhile) is what was wanted.
pub fn already_stopping_is_fine(result: Result<(), vnvdimm_control::BackendError>) -> Result<(), String> {
    match result {
        Ok(()) | Err(vnvdimm_control::BackendError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a stop signal",
    }
}

/// Runs `power_off` on the first stop signal, in `io`'s loop; a second signal ends the
/// process with status 128 + signal. Does nothing unless [`block_in_main`] ran in this
/// thread's ancestry. Returns whether the signals are now watched.
pub fn forward_to(io: &HostIo, power_off: impl Fn() -> Result<(), String> + Send + 'static) -> bool {
    if !blocked_here() {
        return false;
    }
    let mut first = true;
    let handler = move |sig: libc::c_int| {
        let mut err = std::io::stderr();
        if first {
            first = false;
            let _ = writeln!(err, "vnvdimm: {}: powering the guest off (again to stop at once)", name(sig));
            if let Err(e) = power_off() {
                let _ = writeln!(err, "vnvdimm: power-off after {}: {e}", name(sig));
            }
        } else {
            let _ = writeln!(err, "vnvdimm: {} again: stopping now; the DIMMs are not closed cleanly", name(sig));
            std::process::exit(128 + sig);
        }
    };
    match SignalSource::new(&STOP_SIGNALS, handler) {
        Ok(source) => io.add(Box::new(source)).is_ok(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "vnvdimm: cannot watch stop signals ({e}); Ctrl-C ends the VMM without closing the DIMMs");
            false
        }
    }
}
