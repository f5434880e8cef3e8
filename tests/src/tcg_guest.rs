//! A TCG guest for the integration tests that need their own device model (poison
//! placed before boot, odd label sizes): started by `vnvdimm_tcg::TcgVm`, the runner
//! `vnvdimm run --backend tcg` uses, with the default image, the command line the
//! product gives it, the guest agent, and the console in a file. Commands go through
//! the same `Backend::exec` the API's `POST /exec` calls.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::NvdimmPlatform;
use vnvdimm_control::backend::{Backend, ExecOutput};
use vnvdimm_tcg::qemu::{QemuCommand, SerialTarget};
use vnvdimm_tcg::{GuestImage, TcgLayout, TcgVm, TcgVmSpec, GuestOutcome};

/// `vnvdimm run`'s default `--cmdline`, plus what it adds with an API socket.
pub const PRODUCT_CMDLINE: &str = "console=ttyS0 reboot=acpi panic=-1 vnv.agent=hold";

pub struct TcgGuest {
    pub vm: TcgVm,
    /// The device model the guest runs on; closed cleanly by [`TcgGuest::stop`].
    pub platform: Arc<Mutex<NvdimmPlatform>>,
    pub console_log: PathBuf,
    /// Every command so far with its status, time and output, for failure messages.
    pub log: Vec<String>,
    pub started: Instant,
}

impl TcgGuest {
    /// Boots the default image on `layout`/`platform` with 512 MiB of RAM; RAM file,
    /// tables, sockets and the console log go to `work`.
    pub fn start(
        image: &GuestImage,
        layout: TcgLayout,
        platform: Arc<Mutex<NvdimmPlatform>>,
        memory_bytes: u64,
        work: &Path,
    ) -> Result<TcgGuest, vnvdimm_tcg::vm::VmError> {
        let console_log = work.join("console.log");
        let spec = TcgVmSpec {
            qemu: QemuCommand::default_qemu(),
            kernel: image.vmlinux.clone(),
            initrd: Some(image.initramfs.clone()),
            cmdline: PRODUCT_CMDLINE.into(),
            cpus: 1,
            memory_bytes,
            layout,
            platform: platform.clone(),
            work_dir: work.to_path_buf(),
            console: SerialTarget::File(console_log.clone()),
            console_input: false,
            agent_socket: Some(work.join("agent.sock")),
        };
        let started = Instant::now();
        Ok(TcgGuest { vm: TcgVm::start(&spec)?, platform, console_log, log: Vec::new(), started })
    }

    /// Runs `command` in the guest (the first call waits for the agent: the boot).
    pub fn exec(&mut self, command: &str, timeout: Duration) -> ExecOutput {
        let t = Instant::now();
        let out = self.vm.exec(command, timeout, &|| false).unwrap_or_else(|e| {
            panic!("exec `{command}`: {e}\n{}\n--- console tail:\n{}", self.log.join("\n"), self.console_tail(40))
        });
        self.log.push(format!("$ {command}   [status {}, {:.2} s]\n{}", out.status, t.elapsed().as_secs_f64(), out.output));
        out
    }

    /// Runs `command` and insists on status 0; returns its output.
    pub fn ok(&mut self, command: &str, timeout: Duration) -> String {
        let out = self.exec(command, timeout);
        assert_eq!(out.status, 0, "`{command}`:\n{}\n--- session:\n{}", out.output, self.log.join("\n"));
        out.output
    }

    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console_log).unwrap_or_default()).into_owned()
    }

    pub fn console_tail(&self, lines: usize) -> String {
        let console = self.console();
        let all: Vec<&str> = console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Powers the guest off through the API's path, waits for QEMU to end and closes
    /// the DIMMs cleanly, as the end of `vnvdimm run` does.
    pub fn stop(self) -> GuestOutcome {
        let _ = self.vm.power_off();
        let outcome = self.vm.wait(Some(Duration::from_secs(60))).unwrap_or_else(|e| panic!("stopping the guest: {e}"));
        nvdimm_model::sync::LockUnpoisoned::lock_unpoisoned(&*self.platform)
            .close_clean_all()
            .unwrap_or_else(|e| panic!("stopping the guest ({outcome}): {e}"));
        outcome
    }
}
