//! What the scenarios need around them: a shared output buffer, the checks that a
//! backend or kernel is there (a missing one fails the scenario, never skips it), and
//! the `vnvdimm run` entry point the caller provides.

use nvdimm_model::sync::LockUnpoisoned;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// `vnvdimm run`'s command line (program name first), console and error writers, and
/// the exit status: the binary's own `cli::run`, handed in by whoever runs the
/// scenarios (this crate cannot depend on the CLI crate, which depends on it).
pub type RunVnvdimm = fn(Vec<String>, &mut dyn Write, &mut dyn Write) -> u8;

static RUNNER: OnceLock<RunVnvdimm> = OnceLock::new();

/// Sets how scenarios start `vnvdimm run`; the first call wins (it is the same function
/// every time in one process).
pub fn set_runner(run: RunVnvdimm) {
    let _ = RUNNER.set(run);
}

pub(crate) fn runner() -> RunVnvdimm {
    *RUNNER.get().expect("vnvdimm_scenarios::set_runner must be called before a scenario runs (a caller bug)")
}

/// A `Write` a test can read while a command writes to it on another thread
/// (e.g. `vnvdimm run`'s console output).
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<(Vec<u8>, Option<std::time::Instant>)>>);

impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.0.lock_unpoisoned();
        buf.0.extend_from_slice(b);
        if !b.is_empty() {
            buf.1 = Some(std::time::Instant::now());
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    /// Everything written so far, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock_unpoisoned().0).into_owned()
    }

    /// How long ago the last byte arrived (None: nothing yet).
    pub fn silent_for(&self) -> Option<std::time::Duration> {
        self.0.lock_unpoisoned().1.map(|t| t.elapsed())
    }
}

/// Fails the calling test, saying what to install, when QEMU cannot run here: a TCG
/// test without QEMU is a failure, never a skip.
pub fn require_qemu() {
    let qemu = vnvdimm_tcg::qemu::QemuCommand::default_qemu();
    if let Err(e) = std::process::Command::new(&qemu).arg("--version").output() {
        panic!("{} is not runnable (apt-get install qemu-system-x86, or set VNV_QEMU): {e}", qemu.display());
    }
}

/// A Debian kernel unpacked by `images/fetch-kernel.sh`: what `vnvdimm run --kernel
/// vmlinux --modules dir` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedKernel {
    pub dir: std::path::PathBuf,
    /// The ELF inside the bzImage (PVH boot, faster under TCG).
    pub vmlinux: std::path::PathBuf,
    /// `uname -r`, the name of the directory.
    pub release: String,
}

/// Debian 12's 6.12 kernel (newest `linux-image-6.12.*+deb12-amd64-unsigned`), fetched
/// once into images/cache/kernels. Fails the calling test, saying why, when it cannot be
/// had (no apt lists that know it, no network): such a test never passes silently.
pub fn debian_612_kernel() -> FetchedKernel {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/fetch-kernel.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(dir) if out.status.success() => std::path::PathBuf::from(dir.trim()),
        _ => panic!(
            "Debian's 6.12 kernel is not available, so this test cannot run: {} ended with {}:\n{stderr}",
            script.display(),
            out.status
        ),
    };
    let release = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    FetchedKernel { vmlinux: dir.join("vmlinux"), dir, release }
}
