//! The KVM VMM runs in this process, its UARTs writing from vCPU threads; `vnvdimm run`
//! hands the guest console to the caller's writer (stdout for the binary, a buffer for
//! a test), as the TCG backend does with QEMU's console. The VMM gets the write end of a
//! pipe and runs on its own thread while this one copies the pipe into `out`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;

/// How long one wait for console bytes lasts before the VMM thread is checked again.
const POLL_MS: libc::c_int = 100;

/// Runs `vmm` with a console writer on another thread and copies what it writes into
/// `out` until `vmm` returns (and the bytes written before that are copied). A failing
/// `out` (e.g. a closed stdout) never stops the guest: the pipe is drained regardless.
pub fn run_with_console<T: Send>(
    out: &mut dyn Write,
    vmm: impl FnOnce(Box<dyn Write + Send>) -> T + Send,
) -> std::io::Result<T> {
    let (mut reader, writer) = std::io::pipe()?;
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || vmm(Box::new(writer)));
        let mut buf = [0u8; 4096];
        let mut copy = |reader: &mut std::io::PipeReader| -> bool {
            match reader.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                    true
                }
                Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
            }
        };
        // Block only while the VMM runs; a writer some thread still holds after the VMM
        // returned must not keep `vnvdimm run` waiting.
        while !handle.is_finished() {
            if readable(&reader, POLL_MS) && !copy(&mut reader) {
                break;
            }
        }
        while readable(&reader, 0) && copy(&mut reader) {}
        match handle.join() {
            Ok(result) => Ok(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether `reader` has bytes (or end of file) within `timeout_ms`.
fn readable(reader: &std::io::PipeReader, timeout_ms: libc::c_int) -> bool {
    let mut fd = libc::pollfd {
        fd: reader.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    n > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_written_before_the_vmm_returns_reaches_out() {
        let mut out = Vec::new();
        let result = run_with_console(&mut out, |mut console| {
            for i in 0..1000 {
                writeln!(console, "line {i}").unwrap();
            }
            42
        })
        .unwrap();
        assert_eq!(result, 42);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert!(text.ends_with("line 999\n"));
    }

    #[test]
    fn a_writer_kept_alive_elsewhere_does_not_block_the_return() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut out = Vec::new();
        run_with_console(&mut out, move |mut console| {
            console.write_all(b"hello").unwrap();
            // Some thread outlives the VMM with the console still open.
            tx.send(console).unwrap();
        })
        .unwrap();
        assert_eq!(out, b"hello");
        drop(rx);
    }
}
