//! The QEMU command line for a TCG guest with our ACPI tables and a shared RAM file.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::layout::{NodeMemory, TcgLayout};

/// Where a serial port goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialTarget {
    /// Appended to a file.
    File(PathBuf),
    /// QEMU's standard output (its stdin is not read: `signal=off`, no mux).
    Stdio,
}

/// One DIMM backing file, mapped by QEMU as a NUMA node's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimmBacking {
    pub path: PathBuf,
    pub readonly: bool,
}

/// Everything QEMU needs for one run. Paths are used as given.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Node 0's memory: guest physical `[0, layout.below_4g)` (Linux RAM, mailbox, firmware).
    pub ram_file: PathBuf,
    /// The DIMM backing files, in platform order.
    pub dimms: Vec<DimmBacking>,
    pub cpus: u32,
    /// Tables given with `-acpitable` (NFIT, SSDT, ...).
    pub acpi_tables: Vec<PathBuf>,
    /// Kernel console (ttyS0).
    pub console: SerialTarget,
    /// Second serial port (ttyS1), where the test guest's init writes step results.
    pub results_log: Option<PathBuf>,
    /// QMP on this Unix socket (QEMU listens, does not wait).
    pub qmp_socket: Option<PathBuf>,
    /// The guest agent's serial port (ttyS2, docs/guest-agent.md) on this Unix socket
    /// (QEMU listens, does not wait). Without `results_log`, ttyS1 then shares the
    /// console (a mux chardev), so step output still reaches the console and the agent
    /// still gets ttyS2.
    pub agent_socket: Option<PathBuf>,
    /// QEMU forwards the guest's writes to [`DSM_KICK_PORT`] to this Unix socket
    /// (`isa-debugcon`; QEMU listens, does not wait): the mailbox poller's wake-up.
    pub dsm_kick_socket: Option<PathBuf>,
    /// Descriptors QEMU inherits (memfd guest RAM named `/proc/self/fd/N`).
    pub inherit_fds: Vec<RawFd>,
    /// Kernel arguments before the memory map.
    pub cmdline: String,
    /// Kernel arguments added after ours.
    pub extra_append: String,
}

/// The I/O port the SSDT's NCAL writes after ringing the doorbell (see
/// `nvdimm_model::aml::SsdtOptions::kick_port`). Free on QEMU's `pc` machine: its
/// memory-hotplug ports end at 0x0a17 and its own NVDIMM's at 0x0a1b.
pub const DSM_KICK_PORT: u16 = 0x0a28;

/// Put before the user's arguments, so a user's own `pti=` (the last one wins) still
/// decides. The CPU is GenuineIntel for machine-check grading (see `args`), and Linux
/// turns on page-table isolation for any Intel CPU that does not declare itself immune
/// through IA32_ARCH_CAPABILITIES, which TCG cannot provide. TCG does not speculate, so
/// PTI protects nothing here, while its CR3 switch on every kernel entry flushes TCG's
/// software TLB: it made boot ~0.6 s slower and every ndctl run ~40 % slower.
pub const TCG_CMDLINE_PREFIX: &str = "pti=off";

/// The kernel arguments the test harness boots with.
pub const HARNESS_CMDLINE: &str = "console=ttyS0,115200 panic=-1 oops=panic rdinit=/init";

impl QemuCommand {
    /// Default QEMU binary: `$VNV_QEMU` or `qemu-system-x86_64` from PATH.
    pub fn default_qemu() -> PathBuf {
        std::env::var_os("VNV_QEMU")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
    }

    /// The kernel command line: [`TCG_CMDLINE_PREFIX`], the base arguments, the exact
    /// memory map, and `no_timer_check` (TCG's timer runs unevenly; skip the boot-time
    /// IO-APIC check).
    pub fn append(&self, layout: &TcgLayout) -> String {
        let mut s = format!("{TCG_CMDLINE_PREFIX} {} {} no_timer_check", self.cmdline.trim(), layout.exactmap());
        if !self.extra_append.is_empty() {
            s.push(' ');
            s.push_str(&self.extra_append);
        }
        s.trim_start().to_string()
    }

    /// The argument vector (without the program).
    pub fn args(&self, layout: &TcgLayout) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let push = |a: &mut Vec<OsString>, s: &str| a.push(s.into());
        // No default devices: nothing claims MMIO in the PCI hole where the flush hints live.
        push(&mut a, "-nodefaults");
        push(&mut a, "-no-user-config");
        push(&mut a, "-display");
        push(&mut a, "none");
        push(&mut a, "-machine");
        // max-ram-below-4g = node 0: the DIMM nodes after it are mapped from 4 GiB on.
        push(&mut a, &layout.machine_arg());
        // One memory backend per NUMA node; QEMU lays them out back to back in node order.
        for (id, (what, range)) in layout.nodes().into_iter().enumerate() {
            let size = format!("{}k", (range.end - range.start) / 1024);
            let (path, readonly) = match what {
                NodeMemory::Ram => (self.ram_file.as_path(), false),
                NodeMemory::Dimm(i) => match self.dimms.get(i) {
                    Some(d) => (d.path.as_path(), d.readonly),
                    None => (Path::new("/missing-dimm-backing-file"), false),
                },
            };
            push(&mut a, "-object");
            a.push(join(&[
                format!("memory-backend-file,id=mem{id},share=on,size={size},mem-path=").as_ref(),
                opt_escape(path).as_ref(),
                if readonly { ",readonly=on".as_ref() } else { "".as_ref() },
            ]));
            push(&mut a, "-numa");
            let cpus = if id == 0 {
                format!(",cpus=0-{}", self.cpus.max(1) - 1)
            } else {
                String::new()
            };
            push(&mut a, &format!("node,nodeid={id},memdev=mem{id}{cpus}"));
        }
        push(&mut a, "-m");
        push(&mut a, &format!("{}M", layout.ram_mib()));
        push(&mut a, "-smp");
        push(&mut a, &self.cpus.max(1).to_string());
        // qemu64 has CPUID MCE and MCA, and TCG gives it MCG_SER_P. Its default vendor
        // is AMD, whose machine-check grading in Linux has no SRAO ("Uncorrected error
        // without MCA Recovery" -> panic); as GenuineIntel, an HMP `mce` SRAO reaches
        // memory_failure() like on the Intel hosts the spec values come from.
        push(&mut a, "-cpu");
        push(&mut a, "qemu64,vendor=GenuineIntel");
        push(&mut a, "-no-reboot");
        // A kernel panic is a crash, not a reboot: the guest's pvpanic driver (ACPI
        // QEMU0001, port 0x505) reports it and QEMU shuts down with reason guest-panic.
        push(&mut a, "-device");
        push(&mut a, "pvpanic");
        push(&mut a, "-action");
        push(&mut a, "panic=shutdown");
        // ttyS1 must exist for the agent to be ttyS2; without a results file it is a
        // second front end of the console's chardev.
        let share_console = self.console_is_multiplexed();
        let mux = if share_console { ",mux=on" } else { "" };
        match &self.console {
            SerialTarget::File(path) if !share_console => {
                push(&mut a, "-serial");
                a.push(join(&["file:".as_ref(), path.as_os_str()]));
            }
            SerialTarget::File(path) => {
                push(&mut a, "-chardev");
                a.push(join(&["file,id=con0,mux=on,path=".as_ref(), opt_escape(path).as_ref()]));
                push(&mut a, "-serial");
                push(&mut a, "chardev:con0");
            }
            SerialTarget::Stdio => {
                push(&mut a, "-chardev");
                push(&mut a, &format!("stdio,id=con0,signal=off{mux}"));
                push(&mut a, "-serial");
                push(&mut a, "chardev:con0");
            }
        }
        if let Some(log) = &self.results_log {
            push(&mut a, "-serial");
            a.push(join(&["file:".as_ref(), log.as_os_str()]));
        } else if share_console {
            push(&mut a, "-serial");
            push(&mut a, "chardev:con0");
        }
        if let Some(sock) = &self.agent_socket {
            push(&mut a, "-chardev");
            a.push(join(&["socket,id=vnvagent,server=on,wait=off,path=".as_ref(), opt_escape(sock).as_ref()]));
            push(&mut a, "-serial");
            push(&mut a, "chardev:vnvagent");
        }
        if let Some(sock) = &self.dsm_kick_socket {
            push(&mut a, "-chardev");
            a.push(join(&["socket,id=vnvkick,server=on,wait=off,path=".as_ref(), opt_escape(sock).as_ref()]));
            push(&mut a, "-device");
            push(&mut a, &format!("isa-debugcon,iobase={DSM_KICK_PORT:#x},chardev=vnvkick"));
        }
        if let Some(sock) = &self.qmp_socket {
            push(&mut a, "-qmp");
            a.push(join(&["unix:".as_ref(), opt_escape(sock).as_ref(), ",server=on,wait=off".as_ref()]));
        }
        push(&mut a, "-monitor");
        push(&mut a, "none");
        for table in &self.acpi_tables {
            push(&mut a, "-acpitable");
            a.push(join(&["file=".as_ref(), opt_escape(table).as_ref()]));
        }
        push(&mut a, "-kernel");
        a.push(self.kernel.clone().into());
        if let Some(initrd) = &self.initrd {
            push(&mut a, "-initrd");
            a.push(initrd.clone().into());
        }
        push(&mut a, "-append");
        a.push(self.append(layout).into());
        a
    }

    /// Whether ttyS0 and ttyS1 share the console's chardev (`mux=on`): ttyS1 must
    /// exist for the agent to be ttyS2, and without a results file it goes there.
    pub fn console_is_multiplexed(&self) -> bool {
        self.agent_socket.is_some() && self.results_log.is_none()
    }

    pub fn command(&self, layout: &TcgLayout) -> Command {
        let mut c = Command::new(&self.qemu);
        c.args(self.args(layout));
        inherit_fds(&mut c, self.inherit_fds.clone());
        c
    }

    /// The command as one shell-pasteable line (for logs and reports).
    pub fn display(&self, layout: &TcgLayout) -> String {
        let mut parts = vec![shell_quote(&self.qemu.to_string_lossy())];
        parts.extend(self.args(layout).iter().map(|a| shell_quote(&a.to_string_lossy())));
        parts.join(" ")
    }
}

/// Makes `fds` (close-on-exec in this process) survive the exec of `command`'s child,
/// under the same numbers, without leaking them into any other child.
pub fn inherit_fds(command: &mut Command, fds: Vec<RawFd>) {
    if fds.is_empty() {
        return;
    }
    // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
    // async-signal-safe; it does not allocate (the Vec was moved in beforehand).
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
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
    fn command_line_carries_nodes_tables_and_logs() {
        let dimms = vec![
            DimmConfig::with_defaults(0, "/x".into(), 256 * MIB),
            DimmConfig::with_defaults(1, "/y".into(), 128 * MIB),
        ];
        let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
        let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap();
        let q = QemuCommand {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initrd: Some("/k/initrd".into()),
            ram_file: "/run/a,b/ram".into(),
            dimms: vec![
                DimmBacking { path: "/data/d0".into(), readonly: false },
                DimmBacking { path: "/data/d1".into(), readonly: true },
            ],
            cpus: 2,
            acpi_tables: vec!["/run/NFIT.dat".into(), "/run/SSDT.dat".into()],
            console: SerialTarget::File("/run/console.log".into()),
            results_log: Some("/run/results.log".into()),
            qmp_socket: Some("/run/qmp.sock".into()),
            agent_socket: None,
            dsm_kick_socket: Some("/run/kick.sock".into()),
            inherit_fds: vec![],
            cmdline: HARNESS_CMDLINE.into(),
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
        assert_eq!(after("-qmp"), vec!["unix:/run/qmp.sock,server=on,wait=off"]);
        assert_eq!(after("-device"), vec!["pvpanic", "isa-debugcon,iobase=0xa28,chardev=vnvkick"]);
        assert_eq!(after("-action"), vec!["panic=shutdown"]);
        assert!(after("-chardev").contains(&"socket,id=vnvkick,server=on,wait=off,path=/run/kick.sock"));
        let mib = layout.ram_mib();
        assert_eq!(after("-m"), vec![format!("{mib}M")]);
        let k = |r: &std::ops::Range<u64>| (r.end - r.start) / 1024;
        let ram = layout.ram_node();
        assert_eq!(
            after("-object"),
            vec![
                format!("memory-backend-file,id=mem0,share=on,size={}k,mem-path=/run/a,,b/ram", k(&ram)),
                format!("memory-backend-file,id=mem1,share=on,size={}k,mem-path=/data/d0", 256 * 1024),
                format!("memory-backend-file,id=mem2,share=on,size={}k,mem-path=/data/d1,readonly=on", 128 * 1024),
            ]
        );
        assert_eq!(
            after("-numa"),
            vec!["node,nodeid=0,memdev=mem0,cpus=0-1", "node,nodeid=1,memdev=mem1", "node,nodeid=2,memdev=mem2"]
        );
        // The node sizes add up to -m: QEMU refuses the line otherwise. Node 0 is the
        // whole RAM below 4 GiB, so the DIMMs start at 4 GiB.
        assert_eq!(k(&ram) + 384 * 1024, mib * 1024);
        assert_eq!(after("-machine"), vec![format!("pc,accel=tcg,max-ram-below-4g={}M", ram.end / MIB)]);
        let append = after("-append")[0];
        assert!(append.starts_with(&format!("{TCG_CMDLINE_PREFIX} {HARNESS_CMDLINE}")), "{append}");
        assert!(append.contains(&layout.exactmap()), "{append}");
        assert!(append.ends_with("vnv.x=1"));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert_eq!(after("-cpu"), vec!["qemu64,vendor=GenuineIntel"]);
        assert!(q.display(&layout).contains("'pti=off console=ttyS0,115200"));
        let stdio = QemuCommand { console: SerialTarget::Stdio, results_log: None, ..q };
        let args: Vec<String> = stdio.args(&layout).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w[0] == "-serial" && w[1] == "chardev:con0"));
        // With the agent: console on ttyS0 and ttyS1 (mux), agent on ttyS2.
        let agent = QemuCommand { agent_socket: Some("/run/a,b/agent.sock".into()), ..stdio.clone() };
        let args: Vec<String> = agent.args(&layout).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let after = |flag: &str| -> Vec<String> {
            args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone()).collect()
        };
        assert_eq!(after("-serial"), vec!["chardev:con0", "chardev:con0", "chardev:vnvagent"]);
        assert_eq!(
            after("-chardev"),
            vec![
                "stdio,id=con0,signal=off,mux=on",
                "socket,id=vnvagent,server=on,wait=off,path=/run/a,,b/agent.sock",
                "socket,id=vnvkick,server=on,wait=off,path=/run/kick.sock"
            ]
        );
        // With a results file, the agent simply comes third.
        let harness = QemuCommand {
            console: SerialTarget::File("/run/c.log".into()),
            results_log: Some("/run/r.log".into()),
            ..agent
        };
        let args: Vec<String> = harness.args(&layout).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let serials: Vec<&str> = args.windows(2).filter(|w| w[0] == "-serial").map(|w| w[1].as_str()).collect();
        assert_eq!(serials, vec!["file:/run/c.log", "file:/run/r.log", "chardev:vnvagent"]);
    }
}
