//! Watching the nested host's L1 while it runs. Two ways it can fail as a test host,
//! both seen on loaded 2-core machines, neither the fault of the test inside it:
//! - its kernel reports a soft lockup or an RCU stall (TCG emulating SVM was starved);
//! - it freezes outright: no console output at all, not even the heartbeat its init
//!   prints every 20 s (images/nested-init), because its timers stopped with its vCPUs.
//!
//! A frozen L1 is photographed through QEMU's human monitor (`info cpus`, `info
//! registers -a`) before it is killed, so the report says where its vCPUs were.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The heartbeat nested-init prints on L1's console: `<uptime> <load1> <load5> <load15>`.
pub const ALIVE_MARK: &str = "@@VNV-NESTED-ALIVE ";
/// Beats come every 20 s of L1 time; a loaded host slows TCG, so only a long silence
/// (boot included) counts as frozen.
pub const FROZEN_AFTER: Duration = Duration::from_secs(240);

/// What L1's console says about L1.
#[derive(Debug, PartialEq)]
pub enum L1Health {
    Running,
    /// Its kernel's lockup watchdog fired; the console's last lines.
    Wedged(String),
    /// No heartbeat for `silent_for`; the last beat seen, if any.
    Frozen {
        silent_for: Duration,
        last_beat: Option<String>,
    },
}

/// Follows one L1's console file.
pub struct L1Watch {
    console: PathBuf,
    beats: usize,
    last_beat: Option<String>,
    heard_at: Instant,
}

impl L1Watch {
    pub fn new(console: &Path) -> L1Watch {
        L1Watch {
            console: console.to_path_buf(),
            beats: 0,
            last_beat: None,
            heard_at: Instant::now(),
        }
    }

    /// The last heartbeat seen (`uptime load1 load5 load15`), for failure reports.
    pub fn last_beat(&self) -> Option<&str> {
        self.last_beat.as_deref()
    }

    pub fn poll(&mut self) -> L1Health {
        self.poll_at(Instant::now())
    }

    fn poll_at(&mut self, now: Instant) -> L1Health {
        let text = std::fs::read(&self.console)
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        if text.contains("soft lockup - CPU#") || text.contains("rcu_preempt detected stalls") {
            let tail: Vec<&str> = text.lines().rev().take(10).collect();
            return L1Health::Wedged(tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        let beats: Vec<&str> = text
            .match_indices(ALIVE_MARK)
            .filter_map(|(at, _)| text[at + ALIVE_MARK.len()..].split("@@").next())
            .collect();
        if beats.len() > self.beats {
            self.beats = beats.len();
            self.last_beat = beats.last().map(|b| b.trim().to_string());
            self.heard_at = now;
        }
        let silent_for = now.saturating_duration_since(self.heard_at);
        if silent_for > FROZEN_AFTER {
            return L1Health::Frozen {
                silent_for,
                last_beat: self.last_beat.clone(),
            };
        }
        L1Health::Running
    }
}

/// Asks QEMU's human monitor at `socket` where the vCPUs are; never blocks for long
/// (a QEMU that does not answer is itself part of the answer).
pub fn monitor_snapshot(socket: &Path) -> String {
    let ask = || -> std::io::Result<String> {
        let mut s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        read_to_prompt(&mut s)?;
        let mut out = String::new();
        for cmd in ["info status", "info cpus", "info registers -a"] {
            s.write_all(format!("{cmd}\n").as_bytes())?;
            out.push_str(&format!("(qemu) {cmd}\n{}", answer(&read_to_prompt(&mut s)?)));
        }
        Ok(out)
    };
    match ask() {
        Ok(text) => text,
        Err(e) => format!("QEMU's monitor did not answer ({e}): QEMU itself is stuck"),
    }
}

fn read_to_prompt(s: &mut UnixStream) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"(qemu) ") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The monitor's reply to one command, less its character-by-character echo (the first
/// line), its next prompt and the FPU/vector registers nobody reads in a hang report.
fn answer(reply: &str) -> String {
    let text = strip_terminal_noise(reply);
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    body.trim_end_matches("(qemu) ")
        .lines()
        .filter(|l| !l.starts_with("FPR") && !l.starts_with("XMM") && !l.starts_with("YMM"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The monitor echoes with terminal escapes and carriage returns; keep the text.
fn strip_terminal_noise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lockup_in_l1s_console_marks_it_wedged() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("c.log");
        std::fs::write(&console, "[ 1.0] kvm: loaded\n").unwrap();
        let mut watch = L1Watch::new(&console);
        assert_eq!(watch.poll(), L1Health::Running);
        std::fs::write(&console, "[ 99.1] watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [x:1]\n").unwrap();
        assert!(matches!(watch.poll(), L1Health::Wedged(tail) if tail.contains("soft lockup")));
        assert_eq!(L1Watch::new(&dir.path().join("missing")).poll(), L1Health::Running);
    }

    #[test]
    fn silence_longer_than_the_limit_is_frozen_and_a_beat_resets_it() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("c.log");
        std::fs::write(&console, "").unwrap();
        let mut watch = L1Watch::new(&console);
        let t0 = watch.heard_at;
        assert_eq!(watch.poll_at(t0 + FROZEN_AFTER / 2), L1Health::Running);
        std::fs::write(&console, "@@VNV-NESTED-ALIVE 20.01 1.50 0.90 0.30@@\n").unwrap();
        let beat = t0 + FROZEN_AFTER - Duration::from_secs(1);
        assert_eq!(watch.poll_at(beat), L1Health::Running);
        assert_eq!(watch.last_beat(), Some("20.01 1.50 0.90 0.30"));
        // The same beat again is not a new one.
        let late = beat + FROZEN_AFTER + Duration::from_secs(1);
        assert_eq!(
            watch.poll_at(late),
            L1Health::Frozen {
                silent_for: FROZEN_AFTER + Duration::from_secs(1),
                last_beat: Some("20.01 1.50 0.90 0.30".into())
            }
        );
    }

    #[test]
    fn monitor_noise_is_stripped_and_a_missing_monitor_is_reported() {
        assert_eq!(strip_terminal_noise("\u{1b}[K(qemu) info cpus\r\n* CPU #0"), "(qemu) info cpus\n* CPU #0");
        assert_eq!(
            answer("iininfo info cpus\r\n* CPU #0: thread_id=7\r\nFPR0=0 0000\r\n(qemu) "),
            "* CPU #0: thread_id=7\n"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(monitor_snapshot(&dir.path().join("none.sock")).contains("did not answer"));
    }
}
