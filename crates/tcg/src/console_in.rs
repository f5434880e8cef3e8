//! The console's input as QEMU takes it. When the console's chardev is multiplexed
//! (ttyS0 and ttyS1 share it, `mux=on`), QEMU gives input to the frontend attached
//! last, ttyS1, and reads Ctrl-A as its own escape key. So the first write rotates the
//! focus to ttyS0 (Ctrl-A c) and every Ctrl-A meant for the guest is doubled.

use std::process::ChildStdin;

const CTRL_A: u8 = 0x01;

pub struct ConsoleIn {
    qemu_stdin: ChildStdin,
    multiplexed: bool,
    focused: bool,
}

impl ConsoleIn {
    pub fn new(qemu_stdin: ChildStdin, multiplexed: bool) -> Self {
        ConsoleIn { qemu_stdin, multiplexed, focused: !multiplexed }
    }

    /// The bytes QEMU's stdin must get for the guest's `bytes`, written by the caller
    /// through [`ConsoleIn::pipe`] (the host I/O loop's keyboard feed, non-blocking).
    pub fn encode(&mut self, bytes: &[u8]) -> Vec<u8> {
        let encoded = encode(bytes, self.multiplexed, !self.focused);
        self.focused = true;
        encoded
    }

    /// QEMU's stdin.
    pub fn pipe(&mut self) -> &mut ChildStdin {
        &mut self.qemu_stdin
    }
}

fn encode(bytes: &[u8], multiplexed: bool, rotate_focus: bool) -> Vec<u8> {
    if !multiplexed {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len() + 2);
    if rotate_focus {
        out.extend([CTRL_A, b'c']);
    }
    for &b in bytes {
        if b == CTRL_A {
            out.push(CTRL_A);
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_console_gets_the_bytes_as_they_are() {
        assert_eq!(encode(b"ls\x01\n", false, false), b"ls\x01\n");
    }

    #[test]
    fn a_multiplexed_console_is_focused_once_and_ctrl_a_doubled() {
        assert_eq!(encode(b"a\x01b", true, true), b"\x01ca\x01\x01b");
        assert_eq!(encode(b"c", true, false), b"c");
    }
}
