//! Watching the nested host's L1 while it runs. Two ways it can fail as a test host,
//! both seen on loaded 2-core machines, neither the fault of the test inside it:
//! - its kernel reports a soft lockup or an RCU stall (TCG emulating SVM was starved);
//! - it freezes outright: no console output at all, not even the heartbeat its init
//!   prints every 20 s (images/nested-init), because its timers stopped with its vCPUs.
//!
//! - one of its vCPUs loops on a page fault at the instruction it is fetching while the
//!   other vCPU and the heartbeat go on: seen for minutes at an instruction in L1's
//!   module space (kvm's, with an L2 running and printing to its console), a fault
//!   TCG's emulation of SVM never resolves. Sampled, that vCPU is never halted, its CR2 (the faulting address,
//!   in the kernel) never changes, and most samples find RIP at that very address (the
//!   others in the fault handler).
//!
//! A frozen L1 is photographed through QEMU's human monitor (`info cpus`, `info
//! registers -a`) before it is killed, so the report says where its vCPUs were; the
//! fault loop is found through the same monitor, sampled every [`SAMPLE_EVERY`].

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

/// How often the vCPUs are sampled for a fault loop.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// Samples in a row at the same faulting RIP that make a vCPU stuck (about two minutes).
const STUCK_SAMPLES: usize = 4;

/// Asks QEMU's human monitor at `socket` where the vCPUs are; never blocks for long
/// (a QEMU that does not answer is itself part of the answer).
pub fn monitor_snapshot(socket: &Path) -> String {
    match ask(socket, &["info status", "info cpus", "info registers -a"]) {
        Ok(text) => text,
        Err(e) => format!("QEMU's monitor did not answer ({e}): QEMU itself is stuck"),
    }
}

/// The monitor's answers to `commands`, each after its `(qemu) command` line.
fn ask(socket: &Path, commands: &[&str]) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    read_to_prompt(&mut s)?;
    let mut out = String::new();
    for cmd in commands {
        s.write_all(format!("{cmd}\n").as_bytes())?;
        out.push_str(&format!("(qemu) {cmd}\n{}", answer(&read_to_prompt(&mut s)?)));
    }
    Ok(out)
}

/// One of L1's vCPUs as `info registers -a` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuState {
    pub rip: u64,
    pub cr2: u64,
    pub halted: bool,
}

/// The vCPUs in `info registers -a` output, in order.
pub fn parse_registers(text: &str) -> Vec<CpuState> {
    let field = |cpu: &str, name: &str| -> Option<String> {
        let at = cpu.find(name)? + name.len();
        Some(cpu[at..].split(|c: char| c.is_whitespace()).next()?.to_string())
    };
    text.split("CPU#")
        .skip(1)
        .filter_map(|cpu| {
            let hex = |name| u64::from_str_radix(&field(cpu, name)?, 16).ok();
            Some(CpuState { rip: hex("RIP=")?, cr2: hex("CR2=")?, halted: field(cpu, "HLT=")? == "1" })
        })
        .collect()
}

/// L1's vCPUs now, or `None` when the monitor does not answer.
pub fn cpu_states(socket: &Path) -> Option<Vec<CpuState>> {
    ask(socket, &["info registers -a"]).ok().map(|text| parse_registers(&text))
}

/// Where Linux's kernel addresses start (the upper half of the 48-bit space).
const KERNEL_SPACE: u64 = 0xffff_8000_0000_0000;

/// Finds a vCPU that keeps faulting on the instruction it is fetching.
#[derive(Default)]
pub struct FaultLoopWatch {
    runs: Vec<Option<FaultRun>>,
}

/// Samples in a row of one busy vCPU with the same kernel CR2.
#[derive(Clone, Copy)]
struct FaultRun {
    cr2: u64,
    samples: usize,
    /// Of those, the ones with RIP at CR2.
    at_fault: usize,
}

impl FaultLoopWatch {
    /// Takes one sample; returns (vCPU, faulting address) once a vCPU was stuck for long
    /// enough: [`STUCK_SAMPLES`] busy samples with the same kernel CR2, at least half of
    /// them with RIP there.
    pub fn sample(&mut self, cpus: &[CpuState]) -> Option<(usize, u64)> {
        self.runs.resize(cpus.len(), None);
        for (i, cpu) in cpus.iter().enumerate() {
            let candidate = !cpu.halted && cpu.cr2 >= KERNEL_SPACE;
            let at_fault = usize::from(cpu.rip == cpu.cr2);
            self.runs[i] = match (candidate, self.runs[i]) {
                (false, _) => None,
                (true, Some(run)) if run.cr2 == cpu.cr2 => {
                    Some(FaultRun { samples: run.samples + 1, at_fault: run.at_fault + at_fault, ..run })
                }
                (true, _) => Some(FaultRun { cr2: cpu.cr2, samples: 1, at_fault }),
            };
            if let Some(run) = self.runs[i] {
                if run.samples >= STUCK_SAMPLES && 2 * run.at_fault >= run.samples {
                    return Some((i, run.cr2));
                }
            }
        }
        None
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

    const REGISTERS: &str = "(qemu) info registers -a\n\nCPU#0\nRAX=0 RBX=0\n\
        RIP=ffffffff81a592eb RFL=00000202 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
        CR0=80050033 CR2=00000000005794a9 CR3=00000001039f2000 CR4=003506f0\n\nCPU#1\n\
        RIP=ffffffffc042020c RFL=00010246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\n\
        CR0=80050033 CR2=ffffffffc042020c CR3=00000001039f2000 CR4=003506f0\n";

    #[test]
    fn registers_are_parsed_per_cpu() {
        assert_eq!(
            parse_registers(REGISTERS),
            vec![
                CpuState { rip: 0xffffffff81a592eb, cr2: 0x5794a9, halted: true },
                CpuState { rip: 0xffffffffc042020c, cr2: 0xffffffffc042020c, halted: false },
            ]
        );
        assert!(parse_registers("no cpus").is_empty());
    }

    #[test]
    fn a_vcpu_faulting_at_the_same_rip_sample_after_sample_is_stuck() {
        let cpus = parse_registers(REGISTERS);
        let mut watch = FaultLoopWatch::default();
        for _ in 1..STUCK_SAMPLES {
            assert_eq!(watch.sample(&cpus), None);
        }
        assert_eq!(watch.sample(&cpus), Some((1, 0xffffffffc042020c)));
        // Some samples land in the fault handler: still the same loop.
        let in_handler = [cpus[0], CpuState { rip: 0xffffffff8107c40d, ..cpus[1] }];
        let mut watch = FaultLoopWatch::default();
        for i in 1..STUCK_SAMPLES {
            assert_eq!(watch.sample(if i == 2 { &in_handler } else { &cpus }), None);
        }
        assert_eq!(watch.sample(&cpus), Some((1, 0xffffffffc042020c)));
        // A new fault elsewhere, or halting, starts the count again.
        let mut watch = FaultLoopWatch::default();
        let moved = [cpus[0], CpuState { rip: 0xffffffff81001000, cr2: 0xffffffff81001000, halted: false }];
        for i in 0..2 * STUCK_SAMPLES {
            assert_eq!(watch.sample(if i % 2 == 0 { &cpus } else { &moved }), None);
        }
        let mut watch = FaultLoopWatch::default();
        let halted = [cpus[0], CpuState { halted: true, ..cpus[1] }];
        for i in 0..2 * STUCK_SAMPLES {
            assert_eq!(watch.sample(if i % 2 == 0 { &cpus } else { &halted }), None);
        }
        // A busy vCPU whose stale CR2 it is never found at (running a guest): not stuck.
        let mut watch = FaultLoopWatch::default();
        let busy = [cpus[0], CpuState { rip: 0xffffffffc0400000, ..cpus[1] }];
        for _ in 0..2 * STUCK_SAMPLES {
            assert_eq!(watch.sample(&busy), None);
        }
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
