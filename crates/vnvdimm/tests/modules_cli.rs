//! `vnvdimm run --kernel K --modules DIR` refusals, through the real binary: a DIR for
//! another release (exit 2, both releases named), a DIR without the drivers the guest
//! cannot do without (exit 2, named), and `--modules` without `--kernel` or with
//! `--initramfs`. None of them may start anything: the "QEMU" here only leaves a marker
//! file, and no DIMM state sidecar may appear. The kernel, the module trees and the
//! default image are fabricated (VNV_GUEST_IMAGE), so no guest is built or booted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Setup {
    dir: tempfile::TempDir,
    dimm: PathBuf,
    image: PathBuf,
    qemu: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let dimm = dir.path().join("nv0.img");
        std::fs::File::create(&dimm).unwrap().set_len(128 << 20).unwrap();
        let image = dir.path().join("image");
        for (file, text) in [
            ("vmlinux", "\x7fELF"),
            ("bzImage", "bz"),
            ("initramfs.cpio.gz", "gzip"),
            ("kernel-release", "6.1.0-57-amd64\n"),
            ("wanted-modules", "nfit\nnd_pmem\nxfs\n"),
        ] {
            write(&image.join(file), text.as_bytes());
        }
        let qemu = dir.path().join("qemu");
        let marker = dir.path().join("qemu-ran");
        write(&qemu, format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()).as_bytes());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        Setup { dir, dimm, image, qemu }
    }

    /// A bzImage whose header names `release`.
    fn kernel(&self, release: &str) -> PathBuf {
        let mut image = vec![0u8; 0x1000];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20e..0x210].copy_from_slice(&0x400u16.to_le_bytes());
        let version = format!("{release} (builder@host) #1 SMP\0");
        image[0x600..0x600 + version.len()].copy_from_slice(version.as_bytes());
        let path = self.dir.path().join(format!("bzImage-{release}"));
        write(&path, &image);
        path
    }

    /// An INSTALL_MOD_PATH tree for `release` with the named modules (not real ones:
    /// every case here is refused before they would be read).
    fn modules(&self, release: &str, names: &[&str], builtin: &str) -> PathBuf {
        let root = self.dir.path().join(format!("modules-{release}"));
        let dir = root.join("lib/modules").join(release);
        write(&dir.join("modules.builtin"), builtin.as_bytes());
        for name in names {
            write(&dir.join(format!("kernel/drivers/{name}.ko")), b"module");
        }
        root
    }

    /// `vnvdimm run --backend B ...extra`: (exit code, stderr).
    fn run(&self, backend: &str, extra: &[&Path]) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_vnvdimm"))
            .args(["run", "--backend", backend, "--memory", "512M", "--nvdimm"])
            .arg(format!("path={},size=128M", self.dimm.display()))
            .args(extra)
            .env("VNV_GUEST_IMAGE", &self.image)
            .env("VNV_QEMU", &self.qemu)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn nothing_started(&self) {
        assert!(!self.dir.path().join("qemu-ran").exists(), "QEMU was started");
        assert!(!PathBuf::from(format!("{}.state.json", self.dimm.display())).exists(), "a DIMM was opened");
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn arg(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn modules_of_another_release_are_refused_naming_both_on_every_backend() {
    let s = Setup::new();
    let kernel = s.kernel("6.12.9-test");
    let modules = s.modules("6.1.0-57-amd64", &["nfit", "nd_pmem"], "");
    for backend in ["tcg", "kvm", "auto"] {
        let (code, stderr) = s.run(backend, &[arg("--kernel"), &kernel, arg("--modules"), &modules]);
        assert_eq!(code, Some(2), "--backend {backend}: {stderr}");
        assert!(
            stderr.contains("6.12.9-test") && stderr.contains("6.1.0-57-amd64") && stderr.contains("--modules"),
            "--backend {backend}: {stderr}"
        );
        s.nothing_started();
    }
}

#[test]
fn missing_nvdimm_drivers_are_refused_by_name() {
    let s = Setup::new();
    let kernel = s.kernel("6.12.9-test");
    // nfit is built in, nd_pmem neither a file nor built in.
    let modules = s.modules("6.12.9-test", &[], "kernel/drivers/acpi/nfit/nfit.ko\n");
    let (code, stderr) = s.run("tcg", &[arg("--kernel"), &kernel, arg("--modules"), &modules]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("lacks modules") && stderr.contains("nd_pmem") && stderr.contains("6.12.9-test"), "{stderr}");
    s.nothing_started();
}

#[test]
fn modules_need_a_kernel_and_the_images_initramfs() {
    let s = Setup::new();
    let kernel = s.kernel("6.12.9-test");
    let modules = s.modules("6.12.9-test", &["nfit", "nd_pmem"], "");
    let (code, stderr) = s.run("tcg", &[arg("--modules"), &modules]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--modules DIR needs --kernel"), "{stderr}");
    let initrd = s.image.join("initramfs.cpio.gz");
    let (code, stderr) =
        s.run("tcg", &[arg("--kernel"), &kernel, arg("--modules"), &modules, arg("--initramfs"), &initrd]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--initramfs"), "{stderr}");
    s.nothing_started();
}

#[test]
fn a_file_that_is_no_module_is_a_bad_option() {
    let s = Setup::new();
    let kernel = s.kernel("6.12.9-test");
    let modules = s.modules("6.12.9-test", &["nfit", "nd_pmem"], "");
    let (code, stderr) = s.run("tcg", &[arg("--kernel"), &kernel, arg("--modules"), &modules]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("modinfo") && stderr.contains("nfit.ko"), "{stderr}");
    s.nothing_started();
}

#[test]
fn a_foreign_kernel_without_modules_is_warned_about_not_refused() {
    let s = Setup::new();
    let kernel = s.kernel("6.12.9-test");
    let (code, stderr) = s.run("tcg", &[arg("--kernel"), &kernel]);
    // It gets as far as starting QEMU (ours fails at once: exit 1).
    assert_eq!(code, Some(1), "{stderr}");
    assert!(s.dir.path().join("qemu-ran").exists(), "{stderr}");
    assert!(
        stderr.contains("release 6.12.9-test")
            && stderr.contains("modules are for 6.1.0-57-amd64")
            && stderr.contains("--modules DIR"),
        "{stderr}"
    );
}
