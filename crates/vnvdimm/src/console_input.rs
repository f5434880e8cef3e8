//! Where the guest console's keyboard comes from (`vnvdimm run`): standard input.
//! A terminal in the foreground is put in raw mode for the run (every key, Ctrl-C
//! included, goes to the guest; Ctrl-A x powers it off, as under QEMU's `-nographic`)
//! and restored afterwards. A pipe or file is fed as it is. A terminal whose job is in
//! the background is left alone: reading it would stop `vnvdimm run &` with SIGTTIN.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the binary's `main`: only the `vnvdimm` process reads its standard input,
/// never a test or another program that calls the library.
static STDIN_IS_THE_CONSOLE: AtomicBool = AtomicBool::new(false);

/// Lets `vnvdimm run` take the console's input from standard input.
pub fn use_stdin() {
    STDIN_IS_THE_CONSOLE.store(true, Ordering::Relaxed);
}

pub struct ConsoleInput {
    /// A duplicate of standard input, for the VMM's host I/O loop.
    pub source: File,
    /// Whether the Ctrl-A commands apply (a raw-mode terminal).
    pub escape: bool,
    raw_mode: Option<RawMode>,
}

impl ConsoleInput {
    /// Standard input as the console's input, or None when it must not be read.
    pub fn from_stdin() -> Option<Self> {
        if !STDIN_IS_THE_CONSOLE.load(Ordering::Relaxed) {
            return None;
        }
        let stdin = std::io::stdin();
        let fd = stdin.as_raw_fd();
        // SAFETY: isatty on an open descriptor.
        let terminal = unsafe { libc::isatty(fd) } == 1;
        if terminal && !in_foreground(fd) {
            return None;
        }
        let source = File::from(stdin.as_fd().try_clone_to_owned().ok()?);
        // SAFETY: isatty on an open descriptor.
        let interactive = terminal && unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        let raw_mode = if interactive { RawMode::enter(fd) } else { None };
        Some(ConsoleInput { source, escape: raw_mode.is_some(), raw_mode })
    }

    /// Puts the terminal back as it was (also done on drop).
    pub fn restore(&mut self) {
        self.raw_mode.take();
    }
}

fn in_foreground(fd: i32) -> bool {
    // SAFETY: plain queries on an open descriptor and this process.
    unsafe { libc::tcgetpgrp(fd) == libc::getpgrp() }
}

/// The terminal's settings before raw mode, put back on drop.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enter(fd: i32) -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it for an open terminal.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // Keys go to the guest one by one and unechoed (the guest echoes); output
        // processing stays on, so the guest's lines still start at column 0.
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ECHONL | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IGNBRK | libc::BRKINT | libc::PARMRK | libc::ISTRIP | libc::INLCR | libc::IGNCR | libc::ICRNL | libc::IXON);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: a valid termios for the same terminal.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the settings read from this terminal at `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}
