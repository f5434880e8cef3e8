//! The QEMU command line for a TCG guest with our ACPI tables and a shared RAM file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout::TcgLayout;

/// Everything QEMU needs for one run. Paths are used as given.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub ram_file: PathBuf,
    pub nfit: PathBuf,
    pub ssdt: PathBuf,
    /// Kernel console (ttyS0).
    pub console_log: PathBuf,
    /// Second serial port (ttyS1), where the guest's init writes step results.
    pub results_log: PathBuf,
    /// Kernel arguments added after ours.
    pub extra_append: String,
}

impl QemuCommand {
    /// Default QEMU binary: `$VNV_QEMU` or `qemu-system-x86_64` from PATH.
    pub fn default_qemu() -> PathBuf {
        std::env::var_os("VNV_QEMU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
    }

    /// The kernel command line: console, the exact memory map, and fail-fast settings.
    pub fn append(&self, layout: &TcgLayout) -> String {
        let mut s = format!(
            "console=ttyS0,115200 panic=-1 oops=panic rdinit=/init {} {}",
            layout.exactmap(),
            // TCG's timer runs unevenly; skip the boot-time IO-APIC timer check.
            "no_timer_check"
        );
        if !self.extra_append.is_empty() {
            s.push(' ');
            s.push_str(&self.extra_append);
        }
        s
    }

    /// The argument vector (without the program).
    pub fn args(&self, layout: &TcgLayout) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        // No default devices: nothing claims MMIO in the PCI hole where the flush hints live.
        push("-nodefaults");
        push("-no-user-config");
        push("-display");
        push("none");
        push("-machine");
        push("pc,accel=tcg,memory-backend=ram0");
        push("-object");
        a.push(join(&[
            "memory-backend-file,id=ram0,share=on,size=".as_ref(),
            format!("{}M", layout.ram_mib()).as_ref(),
            ",mem-path=".as_ref(),
            opt_escape(&self.ram_file).as_ref(),
        ]));
        let mut push = |s: &str| a.push(s.into());
        push("-m");
        push(&format!("{}M", layout.ram_mib()));
        push("-smp");
        push("1");
        // qemu64 has CPUID MCE and MCA, and TCG gives it MCG_SER_P: enough for Linux's
        // machine-check handler, which the poison path will need.
        push("-cpu");
        push("qemu64");
        push("-no-reboot");
        push("-serial");
        a.push(join(&["file:".as_ref(), self.console_log.as_os_str()]));
        a.push("-serial".into());
        a.push(join(&["file:".as_ref(), self.results_log.as_os_str()]));
        a.push("-acpitable".into());
        a.push(join(&["file=".as_ref(), opt_escape(&self.nfit).as_ref()]));
        a.push("-acpitable".into());
        a.push(join(&["file=".as_ref(), opt_escape(&self.ssdt).as_ref()]));
        a.push("-kernel".into());
        a.push(self.kernel.clone().into());
        a.push("-initrd".into());
        a.push(self.initrd.clone().into());
        a.push("-append".into());
        a.push(self.append(layout).into());
        a
    }

    pub fn command(&self, layout: &TcgLayout) -> Command {
        let mut c = Command::new(&self.qemu);
        c.args(self.args(layout));
        c
    }

    /// The command as one shell-pasteable line (for logs and reports).
    pub fn display(&self, layout: &TcgLayout) -> String {
        let mut parts = vec![shell_quote(&self.qemu.to_string_lossy())];
        parts.extend(self.args(layout).iter().map(|a| shell_quote(&a.to_string_lossy())));
        parts.join(" ")
    }
}

fn join(parts: &[&std::ffi::OsStr]) -> OsString {
    let mut s = OsString::new();
    for p in parts {
        s.push(p);
    }
    s
}

/// QEMU option values separate with ',' and escape it as ",,".
fn opt_escape(path: &Path) -> OsString {
    path.to_string_lossy().replace(',', ",,").into()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_=/.,:+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TcgLayoutOptions;
    use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, MIB};

    #[test]
    fn command_line_carries_layout_tables_and_logs() {
        let dimms = vec![DimmConfig::with_defaults(0, "/x".into(), 256 * MIB)];
        let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
        let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap();
        let q = QemuCommand {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initrd".into(),
            ram_file: "/run/a,b/ram".into(),
            nfit: "/run/NFIT.dat".into(),
            ssdt: "/run/SSDT.dat".into(),
            console_log: "/run/console.log".into(),
            results_log: "/run/results.log".into(),
            extra_append: "vnv.x=1".into(),
        };
        let args: Vec<String> = q
            .args(&layout)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| -> Vec<&str> {
            args.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        assert_eq!(after("-acpitable"), vec!["file=/run/NFIT.dat", "file=/run/SSDT.dat"]);
        assert_eq!(after("-serial"), vec!["file:/run/console.log", "file:/run/results.log"]);
        let mib = layout.ram_mib();
        assert_eq!(after("-m"), vec![format!("{mib}M")]);
        assert_eq!(
            after("-object"),
            vec![format!(
                "memory-backend-file,id=ram0,share=on,size={mib}M,mem-path=/run/a,,b/ram"
            )]
        );
        let append = after("-append")[0];
        assert!(append.contains(&layout.exactmap()), "{append}");
        assert!(append.ends_with("vnv.x=1"));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(q.display(&layout).contains("'console=ttyS0,115200"));
    }
}
