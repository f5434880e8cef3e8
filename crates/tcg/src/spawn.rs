//! Starting QEMU so that it behaves as if started by hand and cannot outlive vnvdimm.
//!
//! - vnvdimm blocks SIGHUP/SIGINT/SIGTERM in every thread (the host I/O loop reads
//!   them from a signalfd), and a child inherits the blocked mask and ignored signals
//!   through fork and exec. A QEMU with them blocked ignores `kill -TERM` (issue 10,
//!   point 2), so the child's mask is emptied and every signal set to its default.
//! - `PR_SET_PDEATHSIG(SIGKILL)` makes the kernel kill QEMU when its parent goes, even
//!   when vnvdimm is killed with SIGKILL and can run no clean-up. The "parent" the
//!   kernel watches is the *thread* that forked, not the process: a QEMU forked from a
//!   short-lived thread would be killed when that thread ends. So every child is forked
//!   by one spawner thread that lives as long as the process.

use nvdimm_model::sync::LockUnpoisoned;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

type Job = (Command, Sender<io::Result<Child>>);

/// The spawner thread's queue, started on first use; the thread never ends.
static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();

/// Spawns `command` with a clean signal state, tied to this process's life: it gets
/// SIGKILL when vnvdimm exits, however it exits.
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    prepare(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // If the thread cannot be created, the jobs sent below fail with a closed channel.
        let _ = std::thread::Builder::new().name("vnvdimm-spawner".into()).spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    let gone = || io::Error::other("the thread that starts child processes has gone");
    spawner.lock_unpoisoned().send((command, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

/// Installs the pre-exec step: default signal dispositions, an empty mask, and death
/// with the parent.
fn prepare(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec in the child and only makes
    // async-signal-safe system calls (sigaction via signal, sigprocmask, prctl, getppid);
    // it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for signal in 1..=libc::SIGRTMAX() {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    // Fails for the few numbers glibc reserves; those keep their default.
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect; then nobody will send
            // the signal, so do not start at all.
            if libc::getppid() != parent {
                return Err(io::Error::other("vnvdimm exited while QEMU was being started"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field of /proc/self/status as the child saw it, parsed as hex.
    fn status_field(out: &str, name: &str) -> u64 {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {out}"));
        u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
    }

    #[test]
    fn the_child_starts_with_no_blocked_or_ignored_signals() {
        // Block SIGHUP/SIGINT/SIGTERM and ignore SIGUSR1 in the spawning thread, as vnvdimm run does.
        let out = std::thread::spawn(|| {
            // SAFETY: changes this thread's mask and, process-wide, SIGUSR1's disposition,
            // which no other test here uses.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for s in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
                    libc::sigaddset(&mut set, s);
                }
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            }
            // grep itself, not through sh: dash clears its signal mask when it starts.
            let mut command = Command::new("grep");
            command.args(["-E", "^(SigBlk|SigIgn):", "/proc/self/status"]);
            command.stdout(std::process::Stdio::piped());
            // Forked from this thread, whose mask the child inherits (the spawner
            // thread's mask depends on which test started it first).
            prepare(&mut command);
            command.spawn().unwrap().wait_with_output().unwrap()
        })
        .join()
        .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let blocked = status_field(&text, "SigBlk:");
        let ignored = status_field(&text, "SigIgn:");
        let bit = |s: i32| 1u64 << (s - 1);
        assert_eq!(blocked & (bit(libc::SIGHUP) | bit(libc::SIGINT) | bit(libc::SIGTERM)), 0, "{text}");
        assert_eq!(ignored & bit(libc::SIGUSR1), 0, "{text}");
    }

    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it() {
        let child = std::thread::spawn(|| {
            let mut command = Command::new("sleep");
            command.arg("30");
            spawn_tied(command).unwrap()
        })
        .join()
        .unwrap();
        let mut child = child;
        // The asking thread has ended; the child must still run (only the spawner's end,
        // which is the process's end, kills it).
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "the child died with the thread that asked for it");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
