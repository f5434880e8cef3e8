//! The nested test host (docs/nested-host.md): an L1 Linux under QEMU TCG with an
//! emulated AMD CPU with SVM and nested paging, whose KVM boots Linux guests (L2) with
//! `vnvdimm run --backend kvm`, on machines whose own KVM cannot.
//!
//! L1 is the guest image's kernel and initramfs booted with
//! `rdinit=/sbin/vnv-nested-init` (images/nested-init): it loads kvm_amd, mounts this
//! host's root read-only over 9p, and runs one shell script in a chroot there, so the
//! test binary, the guest image and every library are at the same paths as here. Writes
//! go to tmpfs in L1 (`TMPDIR=/run/vnv-tmp`). The script's output comes back through
//! L1's second serial port.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vnvdimm_tcg::qemu::QemuCommand;
use vnvdimm_tcg::GuestImage;

use crate::nested_watch::{cpu_states, monitor_snapshot, FaultLoopWatch, L1Health, L1Watch, SAMPLE_EVERY};

/// Set (to 1) in the environment of the test that runs inside L1.
pub const NESTED_L1_ENV: &str = "VNV_NESTED_L1";
/// How many L1s may run at once on this machine (default 1).
pub const NESTED_JOBS_ENV: &str = "VNV_NESTED_JOBS";
/// Overrides how long one L1 may run, in seconds.
pub const NESTED_TIMEOUT_ENV: &str = "VNV_NESTED_TIMEOUT";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// L1's memory: the L2 guest (512 MiB to 1 GiB in the tests), its DIMM backing files
/// on L1's tmpfs, and L1 itself.
const L1_MEMORY: &str = "4G";
/// Two vCPUs, so an L2 with `--cpus 2` runs on two.
const L1_CPUS: &str = "2";
/// An AMD CPU with SVM, which QEMU's TCG emulates with nested paging (NPT).
const L1_CPU: &str = "EPYC-v3,+svm";
/// Overrides QEMU's `-accel` for L1 (e.g. `tcg,thread=single`, to compare).
pub const NESTED_ACCEL_ENV: &str = "VNV_NESTED_ACCEL";
/// Multi-threaded TCG, one host thread per vCPU. Round-robin TCG (`thread=single`)
/// was measured again on 2026-12-06: a 6.1 L2 froze while booting in both attempts of
/// `scenarios_kvm s5`, as in the first trial (docs/nested-host.md).
const L1_ACCEL: &str = "tcg";
/// Environment passed on to the test in L1 (the rest of this process's is not).
const PASSED_ENV: &[&str] = &["RUST_BACKTRACE", "RUST_LOG", "VNV_KEEP_WORK", "VNV_QEMU"];
/// Where L1's writable scratch space is (tmpfs; this host's /tmp stays visible there).
const L1_TMPDIR: &str = "/run/vnv-tmp";

const EXIT_MARK: &str = "@@VNV-NESTED-EXIT rc=";
const UNUSABLE_MARK: &str = "@@VNV-NESTED-UNUSABLE ";

/// One use of the nested host.
pub struct NestedHost;

impl NestedHost {
    /// Whether an L1 can be started here: QEMU runs and the guest image exists.
    pub fn available() -> Result<(), String> {
        let qemu = QemuCommand::default_qemu();
        Command::new(&qemu)
            .arg("--version")
            .output()
            .map_err(|e| format!("{} is not runnable (apt-get install qemu-system-x86): {e}", qemu.display()))?;
        GuestImage::locate_or_build().map_err(|e| format!("guest image: {e}"))?;
        Ok(())
    }

    /// Runs the test `name` of this test binary inside a fresh L1. `Err` holds the
    /// whole story for the failure message: L1's output (prefixed `L1| `) and the tail
    /// of L1's own kernel console.
    pub fn run_test(name: &str) -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this test binary: {e}"))?;
        // L1 runs the binary by its path: a rebuild since this run began replaced it.
        if exe.to_string_lossy().ends_with(" (deleted)") {
            return Err(format!("{} was rebuilt while its tests ran; run them again", exe.display()));
        }
        let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
        let image = GuestImage::locate_or_build().map_err(|e| format!("guest image: {e}"))?;
        let mut env = vec![
            (NESTED_L1_ENV.to_string(), "1".to_string()),
            ("VNV_GUEST_IMAGE".to_string(), image.dir.display().to_string()),
            ("TMPDIR".to_string(), L1_TMPDIR.to_string()),
        ];
        for key in PASSED_ENV {
            if let Ok(v) = std::env::var(key) {
                env.push((key.to_string(), v));
            }
        }
        let mut script = format!("mkdir -p {L1_TMPDIR}\ncd {}\n", shell_quote(&cwd));
        script.push_str("exec env");
        for (k, v) in &env {
            let _ = write!(script, " {k}={}", shell_quote(Path::new(v)));
        }
        let _ = writeln!(
            script,
            " {} --exact {} --include-ignored --nocapture --test-threads=1",
            shell_quote(&exe),
            shell_quote(Path::new(name))
        );
        // One L1 at a time by default, whatever libtest's thread count: each L1 keeps
        // two host threads busy, and every nested hang seen so far was on a machine
        // running two L1s (or an L1 and a build) on two cores.
        let _slot = NestedSlot::take()?;
        // L1 itself, not the guest or the VMM under test, can wedge (its own kernel's
        // soft-lockup watchdog fires: TCG emulating SVM starved on a loaded host),
        // freeze (no heartbeat) or panic. And an L2 can crash with register state no real CPU
        // produces (TCG's SVM emulation, seen a few times in hundreds of runs), or stop
        // part-way through its boot (a 2-vCPU L2 once went silent 3 s in). Each gets one
        // retry in a fresh L1, with the first attempt's whole story printed; a crash or
        // a stall the VMM causes happens again and fails the test.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = match Self::boot(&image, &script) {
                Err(e) if l1_failed(&e) && attempt == 1 => {
                    println!("{e}\nretrying once in a fresh L1");
                    continue;
                }
                other => other?,
            };
            let output = run.prefixed_output();
            let rc = run.exit_code().ok_or_else(|| {
                format!(
                    "the nested host ended without the test's exit status{}\n{output}\n--- L1 console (last 30 lines):\n{}",
                    run.unusable().map(|r| format!(": L1 cannot serve as a KVM host: {r}")).unwrap_or_default(),
                    run.console_tail(30)
                )
            })?;
            println!("{output}");
            println!("(nested host: L1 ran {:.0} s)", run.elapsed.as_secs_f64());
            if rc != 0 && attempt == 1 && l2_crashed(&run.output) {
                println!(
                    "`{name}` failed because its L2 guest crashed or froze while booting (output above); retrying once in a fresh L1"
                );
                continue;
            }
            if rc != 0 {
                return Err(format!("`{name}` failed inside the nested host (exit {rc}); its output is above"));
            }
            if !run.output.contains("test result: ok. 1 passed") {
                return Err(format!(
                    "`{name}` did not run inside the nested host (no such test?); its output is above"
                ));
            }
            return Ok(());
        }
    }

    /// Boots L1, runs `script` (sh) in its chroot over this host's root and waits for
    /// L1 to power off, or kills it at the timeout.
    pub fn boot(image: &GuestImage, script: &str) -> Result<NestedRun, String> {
        let dir = tempfile::Builder::new()
            .prefix("vnv-nested-")
            .tempdir()
            .map_err(|e| format!("cannot create a work directory: {e}"))?;
        let run_sh = dir.path().join("run.sh");
        let console = dir.path().join("l1-console.log");
        let monitor = dir.path().join("monitor.sock");
        let output = dir.path().join("l1-output.log");
        std::fs::write(&run_sh, script).map_err(|e| format!("writing {}: {e}", run_sh.display()))?;
        let append = format!(
            "console=ttyS0 quiet pti=off mitigations=off panic=-1 rdinit=/sbin/vnv-nested-init vnv.nested.run={}",
            run_sh.display()
        );
        let l1_accel = std::env::var(NESTED_ACCEL_ENV).unwrap_or_else(|_| L1_ACCEL.to_string());
        let mut qemu = Command::new(QemuCommand::default_qemu());
        qemu.args(["-machine", "pc", "-accel", &l1_accel, "-cpu", L1_CPU, "-smp", L1_CPUS, "-m", L1_MEMORY])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .arg("-kernel")
            .arg(&image.vmlinux)
            .arg("-initrd")
            .arg(&image.initramfs)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-serial")
            .arg(format!("file:{}", output.display()))
            .args(["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = qemu.spawn().map_err(|e| format!("cannot start QEMU for the nested host: {e}"))?;
        let timeout = std::env::var(NESTED_TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut watch = L1Watch::new(&console);
        let mut fault_loop = FaultLoopWatch::default();
        let mut sampled = Instant::now();
        let status = loop {
            if sampled.elapsed() >= SAMPLE_EVERY {
                sampled = Instant::now();
                let stuck = cpu_states(&monitor).and_then(|cpus| fault_loop.sample(&cpus));
                if let Some((cpu, rip)) = stuck {
                    return Err(stop_hung(&mut child, L1Files { monitor: &monitor, output: &output, console: &console }, started, &format!(
                        "its vCPU {cpu} keeps faulting on fetching the instruction at {rip:#x} (never halted, the same faulting address sample after sample: TCG emulating SVM; last heartbeat {})",
                        watch.last_beat().unwrap_or("none"),
                    )));
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => match watch.poll() {
                    L1Health::Running => std::thread::sleep(Duration::from_millis(500)),
                    L1Health::Wedged(tail) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!(
                            "{L1_HUNG} after {:.0} s (its kernel's lockup watchdog fired):\n{tail}",
                            started.elapsed().as_secs_f64(),
                        ));
                    }
                    L1Health::Frozen { silent_for, last_beat } => {
                        return Err(stop_hung(
                            &mut child,
                            L1Files { monitor: &monitor, output: &output, console: &console },
                            started,
                            &format!(
                                "frozen, no heartbeat for {:.0} s (last: {})",
                                silent_for.as_secs_f64(),
                                last_beat.as_deref().unwrap_or("none since boot"),
                            ),
                        ));
                    }
                },
                Err(e) => return Err(format!("waiting for QEMU: {e}")),
            }
        };
        let stderr = child
            .stderr
            .take()
            .map(|mut s| {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut s, &mut text);
                text
            })
            .unwrap_or_default();
        let read = |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        let run = NestedRun { output: read(&output), console: read(&console), elapsed: started.elapsed() };
        match status {
            None => Err(format!(
                "the nested host did not finish within {} s ({NESTED_TIMEOUT_ENV} sets the limit); L1 was alive (last heartbeat: {})\n{}\n--- L1 console (last 30 lines):\n{}",
                timeout.as_secs(),
                watch.last_beat().unwrap_or("none"),
                run.prefixed_output(),
                run.console_tail(30)
            )),
            Some(s) if !s.success() => Err(format!(
                "QEMU for the nested host failed ({s}): {}\n--- L1 console (last 30 lines):\n{}",
                qemu_errors(&stderr),
                run.console_tail(30)
            )),
            Some(_) if run.exit_code().is_none() && l1_panicked(&run.console) => Err(format!(
                "{L1_PANICKED} after {:.0} s (QEMU ended with it: panic=-1, -no-reboot)\n{}\n--- L1 console (last 30 lines):\n{}",
                run.elapsed.as_secs_f64(),
                run.prefixed_output(),
                run.console_tail(30)
            )),
            Some(_) => Ok(run),
        }
    }
}

/// A place among the L1s allowed to run at once ([`NESTED_JOBS_ENV`]): an exclusive
/// lock on one of that many files in the temporary directory, so it holds across test
/// binaries and processes, and goes with the process however it ends.
struct NestedSlot {
    _file: std::fs::File,
}

impl NestedSlot {
    fn take() -> Result<NestedSlot, String> {
        let jobs: usize = std::env::var(NESTED_JOBS_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
        Self::take_in(&std::env::temp_dir(), jobs)
    }

    fn take_in(dir: &Path, jobs: usize) -> Result<NestedSlot, String> {
        let files = (0..jobs.max(1))
            .map(|i| {
                let path = dir.join(format!("vnv-nested-slot-{i}.lock"));
                std::fs::File::options()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| format!("cannot open the nested host's lock file {}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        loop {
            for file in &files {
                match file.try_lock() {
                    Ok(()) => return Ok(NestedSlot { _file: file.try_clone().map_err(|e| e.to_string())? }),
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => return Err(format!("locking the nested host's slot: {e}")),
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// What one L1 left behind.
pub struct NestedRun {
    /// The script's output (L1's ttyS1) with the init's marks.
    pub output: String,
    /// L1's kernel console.
    pub console: String,
    pub elapsed: Duration,
}

impl NestedRun {
    pub fn exit_code(&self) -> Option<i32> {
        let at = self.output.rfind(EXIT_MARK)? + EXIT_MARK.len();
        self.output[at..].split("@@").next()?.trim().parse().ok()
    }

    pub fn unusable(&self) -> Option<&str> {
        let at = self.output.find(UNUSABLE_MARK)? + UNUSABLE_MARK.len();
        self.output[at..].split("@@").next()
    }

    /// The output with each line marked as L1's, so the inner test harness's summary
    /// lines are never read as this one's.
    pub fn prefixed_output(&self) -> String {
        self.output.lines().map(|l| format!("L1| {l}\n")).collect()
    }

    pub fn console_tail(&self, lines: usize) -> String {
        last_lines(&self.console, lines)
    }
}

/// The files through which one L1 is watched.
struct L1Files<'a> {
    monitor: &'a Path,
    output: &'a Path,
    console: &'a Path,
}

/// Stops a hung L1 after asking QEMU's monitor where its vCPUs are; the report (it
/// starts with [`L1_HUNG`], so the test gets its one retry) says `why`, and ends with
/// L1's console, where its kernel says what it saw (an oops, a lockup) if it could.
fn stop_hung(child: &mut std::process::Child, files: L1Files, started: Instant, why: &str) -> String {
    let snapshot = monitor_snapshot(files.monitor);
    let _ = child.kill();
    let _ = child.wait();
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    format!(
        "{L1_HUNG} after {:.0} s: {why}; the test's output so far:\n{}\n--- QEMU monitor:\n{snapshot}\n--- L1 console (last 30 lines):\n{}",
        started.elapsed().as_secs_f64(),
        read(files.output),
        last_lines(&read(files.console), 30),
    )
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join("\n")
}

/// Whether the test's failure report says its L2 guest crashed under it, or froze
/// part-way through its boot (agent never up, console silent).
fn l2_crashed(output: &str) -> bool {
    output.contains(vnvdimm_scenarios::GUEST_CRASHED_MARK) || output.contains(vnvdimm_scenarios::GUEST_FROZE_MARK)
}

/// Whether L1's own kernel panicked (its console says so; with `panic=-1` and QEMU's
/// `-no-reboot` that ends L1 at once). Seen once in the console test under KVM
/// (2026-12-06): "corrupted stack end detected inside scheduler" in L1's idle task, 9 s
/// into L1, with nothing of ours running in L1's kernel.
fn l1_panicked(console: &str) -> bool {
    console.contains("Kernel panic - not syncing")
}

/// How a wedged L1 is reported (and recognised for the one retry).
const L1_HUNG: &str = "the nested host (L1) hung";
/// How an L1 whose own kernel panicked is reported (and recognised for the one retry).
const L1_PANICKED: &str = "the nested host (L1) panicked";

/// Whether `boot`'s error is L1 failing as a host (hung or panicked), which earns the
/// test one retry in a fresh L1.
fn l1_failed(error: &str) -> bool {
    error.starts_with(L1_HUNG) || error.starts_with(L1_PANICKED)
}

/// QEMU's messages less its warnings about CPUID bits TCG does not emulate (harmless).
fn qemu_errors(stderr: &str) -> String {
    stderr.lines().filter(|l| !l.contains("TCG doesn't support requested feature")).collect::<Vec<_>>().join("\n")
}

/// `path` quoted for sh.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(output: &str) -> NestedRun {
        NestedRun { output: output.into(), console: String::new(), elapsed: Duration::ZERO }
    }

    #[test]
    fn exit_code_is_read_from_the_last_mark() {
        assert_eq!(run("x\n@@VNV-NESTED-EXIT rc=101@@\n").exit_code(), Some(101));
        assert_eq!(run("@@VNV-NESTED-EXIT rc=0@@").exit_code(), Some(0));
        assert_eq!(run("no mark").exit_code(), None);
        assert_eq!(run("@@VNV-NESTED-UNUSABLE modprobe kvm_amd failed@@").unusable(), Some("modprobe kvm_amd failed"));
    }

    #[test]
    fn only_l1s_own_kernel_panic_counts_as_l1_panicking() {
        assert!(l1_panicked(
            "[    9.396064] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n"
        ));
        assert!(!l1_panicked(
            "@@VNV-NESTED-ALIVE 23.93 0.28 0.07 0.02@@\n[    3.4] kvm: Nested Virtualization enabled\n"
        ));
    }

    #[test]
    fn a_hung_or_panicked_l1_earns_the_retry_and_nothing_else_does() {
        assert!(l1_failed(&format!("{L1_HUNG} after 265 s: frozen")));
        assert!(l1_failed(&format!("{L1_PANICKED} after 11 s")));
        assert!(!l1_failed("QEMU for the nested host failed (exit status: 1): cannot open vmlinux"));
        assert!(!l1_failed("the nested host ended without the test's exit status"));
    }

    #[test]
    fn only_a_reported_guest_crash_or_boot_freeze_counts_as_one() {
        let crashed = format!(
            "L1| --- vnvdimm run: ended with exit 3, the guest crashed ({})",
            vnvdimm_scenarios::GUEST_CRASHED_MARK
        );
        assert!(l2_crashed(&crashed));
        assert!(!l2_crashed("L1| --- vnvdimm run: ended with exit 1"));
        assert!(!l2_crashed("L1| assertion failed: left == right"));
        let froze = format!(
            "POST /exec `nproc`: HTTP 500 {{...}} ({}: the agent never came up ...)",
            vnvdimm_scenarios::GUEST_FROZE_MARK
        );
        assert!(l2_crashed(&froze));
    }

    #[test]
    fn inner_summary_lines_are_prefixed() {
        let out = run("test result: ok. 1 passed; 0 failed\n").prefixed_output();
        assert_eq!(out, "L1| test result: ok. 1 passed; 0 failed\n");
    }

    #[test]
    fn slots_admit_as_many_l1s_as_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let first = NestedSlot::take_in(dir.path(), 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let slot = NestedSlot::take_in(&path, 1).unwrap();
            tx.send(()).unwrap();
            slot
        });
        assert!(rx.recv_timeout(Duration::from_secs(2)).is_err(), "a second L1 got in beside the first");
        drop(first);
        rx.recv_timeout(Duration::from_secs(30)).expect("the waiting L1 got no slot after the first left");
        let second = waiter.join().unwrap();
        // Two slots: one more gets in at once.
        let _other = NestedSlot::take_in(dir.path(), 2).unwrap();
        drop(second);
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
