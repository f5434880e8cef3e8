//! The console's escape key when it is a terminal in raw mode, as QEMU's `-nographic`
//! has it: Ctrl-A x powers the guest off, Ctrl-A Ctrl-A sends one Ctrl-A; every other
//! byte (Ctrl-C included) goes to the guest.

const CTRL_A: u8 = 0x01;

pub struct ConsoleEscape {
    armed: bool,
    on_quit: Box<dyn FnMut() + Send>,
}

impl ConsoleEscape {
    pub fn new(on_quit: Box<dyn FnMut() + Send>) -> Self {
        ConsoleEscape { armed: false, on_quit }
    }

    /// The bytes for the guest; runs `on_quit` for Ctrl-A x.
    pub fn filter(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if !self.armed {
                if b == CTRL_A {
                    self.armed = true;
                } else {
                    out.push(b);
                }
                continue;
            }
            self.armed = false;
            match b {
                b'x' | b'X' => {
                    log::warn!("Ctrl-A x on the console: powering the guest off");
                    (self.on_quit)()
                }
                CTRL_A => out.push(CTRL_A),
                // Not a command: both bytes are the guest's.
                other => out.extend([CTRL_A, other]),
            }
        }
        out
    }
}

/// The bytes for the guest: `input` through `escape` when the console has one, else as is.
pub fn filter(escape: Option<&mut ConsoleEscape>, input: &[u8]) -> Vec<u8> {
    match escape {
        Some(escape) => escape.filter(input),
        None => input.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn escape() -> (ConsoleEscape, Arc<AtomicUsize>) {
        let quits = Arc::new(AtomicUsize::new(0));
        let counter = quits.clone();
        (ConsoleEscape::new(Box::new(move || { counter.fetch_add(1, Ordering::SeqCst); })), quits)
    }

    #[test]
    fn ctrl_a_x_quits_and_sends_nothing() {
        let (mut e, quits) = escape();
        assert_eq!(e.filter(b"ls\x01x"), b"ls");
        assert_eq!(quits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_escape_may_span_two_reads() {
        let (mut e, quits) = escape();
        assert_eq!(e.filter(b"\x01"), b"");
        assert_eq!(e.filter(b"x"), b"");
        assert_eq!(quits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn other_bytes_pass_and_ctrl_a_twice_sends_one() {
        let (mut e, quits) = escape();
        assert_eq!(e.filter(b"\x03\x01\x01\x01b"), b"\x03\x01\x01b");
        assert_eq!(quits.load(Ordering::SeqCst), 0);
    }
}
