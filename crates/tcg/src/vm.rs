//! The `vnvdimm run --backend tcg` runner: one QEMU TCG guest on the user's kernel,
//! initramfs and DIMM backing files, with the device model opened from those files,
//! the DSM mailbox polled, QMP for power and machine checks, and the guest console on
//! a pipe the caller forwards (or a file).

use nvdimm_model::sync::LockUnpoisoned;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::NvdimmPlatform;
use thiserror::Error;
use vnvdimm_control::VmState;

use crate::setup::{create_ram_file, io, write_tables, SetupError};
use crate::layout::TcgLayout;
use crate::console_in::ConsoleIn;
use crate::poller::{MailboxPoller, PollerError};
use crate::qemu::{DimmBacking, QemuCommand, SerialTarget};
use crate::qmp::{Qmp, QmpError};
use vnvdimm_control::host_io::HostIo;
use crate::ram::{MailboxMapping, RamError};


#[derive(Debug, Error)]
pub enum VmError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Ram(#[from] RamError),
    #[error(transparent)]
    Poller(#[from] PollerError),
    #[error("{0}; QEMU's messages:\n{1}")]
    Qmp(QmpError, String),
    #[error("waiting for QEMU: {0}")]
    Wait(std::io::Error),
    #[error(transparent)]
    HostIo(#[from] vnvdimm_control::host_io::HostIoError),
    #[error("QEMU ended before it was ready ({status}); its messages:\n{messages}")]
    QemuEnded { status: String, messages: String },
    #[error("connecting to the guest agent's serial port: {0}")]
    Agent(vnvdimm_agent::AgentError),
}

/// What to run.
#[derive(Clone)]
pub struct TcgVmSpec {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Kernel arguments; the memory map is appended.
    pub cmdline: String,
    pub cpus: u32,
    /// Guest RAM as the user asked for it (reported by the API).
    pub memory_bytes: u64,
    pub layout: TcgLayout,
    /// The device model, built from `layout.platform_layout()` (normally
    /// `NvdimmPlatform::open`, so labels, health and poison persist).
    pub platform: Arc<Mutex<NvdimmPlatform>>,
    /// RAM files, tables, QMP socket and QEMU's stderr go here.
    pub work_dir: PathBuf,
    /// `Stdio`: the console is a pipe the caller takes with [`TcgVm::take_console`].
    pub console: SerialTarget,
    /// With `Stdio`: QEMU reads the console's input from a pipe the caller takes with
    /// [`TcgVm::take_console_input`] (else QEMU's stdin is /dev/null).
    pub console_input: bool,
    /// The guest agent's serial port (ttyS2) on this Unix socket; the VM keeps the one
    /// connection QEMU accepts and serves [`vnvdimm_control::Backend::exec`] through it.
    pub agent_socket: Option<PathBuf>,
}

/// How the guest run ended: the type both backends share. Under QEMU (`-no-reboot`)
/// a reboot, a panic with `panic=N` and a triple fault all end as `Reset`; a panic
/// reported through pvpanic is `Crashed`.
pub use vnvdimm_control::GuestOutcome;

/// How long QEMU may take to create and answer its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(20);

const STATE_RUNNING: u8 = 0;
const STATE_SHUTTING_DOWN: u8 = 1;
const STATE_STOPPED: u8 = 2;

/// A running TCG guest. Dropping it kills QEMU.
pub struct TcgVm {
    pub(crate) spec_cpus: u32,
    pub(crate) memory_bytes: u64,
    pub(crate) platform: Arc<Mutex<NvdimmPlatform>>,
    pub(crate) mailbox: MailboxMapping,
    pub(crate) qmp: Qmp,
    pub(crate) created: Instant,
    state: AtomicU8,
    child: Mutex<Option<Child>>,
    /// Wakes `wait` when QEMU ends.
    exit_watch: crate::exit_watch::ExitWatch,
    console: Mutex<Option<ChildStdout>>,
    console_input: Mutex<Option<ConsoleIn>>,
    poller: Mutex<Option<MailboxPoller>>,
    stderr_log: PathBuf,
    command_line: String,
    /// Set by [`TcgVm::wait`]: how QEMU ended.
    qemu_ended: Mutex<Option<String>>,
    /// The guest agent, when the spec asked for its port; one command at a time.
    pub(crate) agent: Option<Mutex<vnvdimm_agent::AgentLink>>,
    /// The VM's host I/O loop: QMP, and whatever the caller adds (the stop signals).
    /// Declared last: it stops after QMP's socket was shut down.
    host_io: HostIo,
}

impl TcgVm {
    /// Writes the tables and RAM files, serves the mailbox from the host I/O loop, starts
    /// QEMU, and connects to QMP. Backing files are opened by QEMU (`share=on`), never read.
    pub fn start(spec: &TcgVmSpec) -> Result<TcgVm, VmError> {
        let dir = &spec.work_dir;
        std::fs::create_dir_all(dir).map_err(io("creating work directory", dir))?;
        let tables = write_tables(&spec.platform, &spec.layout, dir)?;
        let dimms: Vec<DimmBacking> = {
            let p = spec.platform.lock_unpoisoned();
            p.config().dimms.iter().map(|d| DimmBacking { path: d.path.clone(), readonly: d.readonly }).collect()
        };
        let (ram, ram_fds) = create_ram_file(&spec.layout)?;
        let qmp_socket = dir.join("qmp.sock");
        let host_io = HostIo::start()?;
        let q = QemuCommand {
            qemu: spec.qemu.clone(),
            kernel: spec.kernel.clone(),
            initrd: spec.initrd.clone(),
            ram_file: ram.path().to_path_buf(),
            dimms,
            cpus: spec.cpus,
            acpi_tables: tables,
            console: spec.console.clone(),
            results_log: None,
            qmp_socket: Some(qmp_socket.clone()),
            agent_socket: spec.agent_socket.clone(),
            dsm_kick_socket: Some(dir.join("dsm-kick.sock")),
            inherit_fds: ram_fds,
            cmdline: spec.cmdline.clone(),
            extra_append: String::new(),
        };
        let stderr_log = dir.join("qemu.stderr");
        let stderr = File::create(&stderr_log).map_err(io("creating log", &stderr_log))?;
        let command_line = q.display(&spec.layout);
        let cmdline_path = dir.join("qemu.cmdline");
        std::fs::write(&cmdline_path, &command_line).map_err(io("writing", &cmdline_path))?;

        let poller = MailboxPoller::start(
            ram.map_mailbox(spec.layout.mailbox)?,
            spec.platform.clone(),
            q.dsm_kick_socket.clone(),
            &host_io,
        )?;
        let mailbox = ram.map_mailbox(spec.layout.mailbox)?;
        let created = Instant::now();
        let stdout = match spec.console {
            SerialTarget::Stdio => Stdio::piped(),
            SerialTarget::File(_) => Stdio::null(),
        };
        let mut command = q.command(&spec.layout);
        let stdin = match (&spec.console, spec.console_input) {
            (SerialTarget::Stdio, true) => Stdio::piped(),
            _ => Stdio::null(),
        };
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        let mut child = crate::spawn::spawn_tied(command)
            .map_err(|source| SetupError::QemuMissing { qemu: spec.qemu.clone(), source })?;
        let console = child.stdout.take();
        let console_input = child.stdin.take().map(|stdin| ConsoleIn::new(stdin, q.console_is_multiplexed()));
        // A QEMU that refuses its options or kernel exits before it creates the QMP
        // socket; say so at once instead of waiting out the connect timeout.
        let waiting = Instant::now();
        while !qmp_socket.exists() && waiting.elapsed() < QMP_WAIT {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(VmError::QemuEnded { status: status.to_string(), messages: read_lossy(&stderr_log) });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let qmp = match Qmp::connect(&qmp_socket, QMP_WAIT, &host_io) {
            Ok(qmp) => qmp,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmError::Qmp(e, read_lossy(&stderr_log)));
            }
        };
        // QEMU created its chardev sockets before QMP answered.
        let agent = match &spec.agent_socket {
            Some(path) => match vnvdimm_agent::AgentClient::connect_unix_within(path, Duration::from_secs(5)) {
                Ok(client) => Some(Mutex::new(vnvdimm_agent::AgentLink::new(client, crate::backend::AGENT_READY_WAIT))),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(VmError::Agent(e));
                }
            },
            None => None,
        };
        Ok(TcgVm {
            spec_cpus: spec.cpus,
            memory_bytes: spec.memory_bytes,
            platform: spec.platform.clone(),
            mailbox,
            qmp,
            created,
            state: AtomicU8::new(STATE_RUNNING),
            exit_watch: crate::exit_watch::ExitWatch::new(child.id(), &host_io),
            child: Mutex::new(Some(child)),
            console: Mutex::new(console),
            console_input: Mutex::new(console_input),
            poller: Mutex::new(Some(poller)),
            stderr_log,
            command_line,
            qemu_ended: Mutex::new(None),
            agent,
            host_io,
        })
    }

    /// The VM's host I/O loop, for more sources (the stop signals: `vnvdimm run`).
    pub fn host_io(&self) -> &HostIo {
        &self.host_io
    }

    /// Where the console's input goes (QEMU's stdin) when the spec asked for it.
    pub fn take_console_input(&self) -> Option<ConsoleIn> {
        self.console_input.lock().ok()?.take()
    }

    /// The guest console (QEMU's stdout) when the spec asked for `Stdio`; read it to
    /// the end, it closes when QEMU exits.
    pub fn take_console(&self) -> Option<ChildStdout> {
        self.console.lock().ok()?.take()
    }

    /// The QEMU command line, shell-quoted.
    pub fn command_line(&self) -> &str {
        &self.command_line
    }

    pub fn state(&self) -> VmState {
        match self.state.load(Ordering::Acquire) {
            STATE_RUNNING => VmState::Running,
            STATE_SHUTTING_DOWN => VmState::ShuttingDown,
            _ => VmState::Stopped,
        }
    }

    pub(crate) fn mark_shutting_down(&self) {
        let _ = self.state.compare_exchange(STATE_RUNNING, STATE_SHUTTING_DOWN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// DSM calls the poller answered so far.
    pub fn dsm_calls_served(&self) -> u64 {
        self.poller.lock().ok().and_then(|p| p.as_ref().map(|p| p.served())).unwrap_or(0)
    }

    /// Kick bytes the guest's NCAL sent through QEMU's debugcon so far (one per call).
    pub fn dsm_kicks(&self) -> u64 {
        self.poller.lock().ok().and_then(|p| p.as_ref().map(|p| p.kicks())).unwrap_or(0)
    }

    /// Waits until QEMU exits (or `timeout`, then kills it), stops the poller and says
    /// how the guest ended. The DIMMs stay open: the run's lifecycle closes them
    /// (`vnvdimm_control::lifecycle`), once nothing can change them any more.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<GuestOutcome, VmError> {
        let status = self.wait_for_qemu(timeout)?;
        let qemu = match &status {
            Some(s) => format!("QEMU ended: {s}"),
            None => "QEMU killed at the timeout".to_string(),
        };
        *self.qemu_ended.lock_unpoisoned() = Some(qemu.clone());
        self.state.store(STATE_STOPPED, Ordering::Release);
        if let Some(poller) = self.poller.lock_unpoisoned().take() {
            poller.stop(&self.host_io);
        }
        let reason = self.qmp.shutdown_reason();
        let exit = match (status, reason.as_deref()) {
            (None, _) => GuestOutcome::HostStopped("timeout: QEMU killed".into()),
            (Some(_), Some("guest-shutdown")) => GuestOutcome::PowerOff,
            (Some(_), Some("guest-reset")) => GuestOutcome::Reset,
            (Some(_), Some("guest-panic")) => GuestOutcome::Crashed("kernel panic (pvpanic)".into()),
            (Some(_), Some(other)) => GuestOutcome::HostStopped(other.to_string()),
            (Some(s), None) if s.success() => GuestOutcome::HostStopped("QEMU exited without a shutdown event".into()),
            (Some(s), None) => GuestOutcome::BackendFailed(format!("{s}; its messages:\n{}", read_lossy(&self.stderr_log))),
        };
        Ok(exit)
    }

    /// How QEMU ended (`QEMU ended: exit status: 0`, `... signal: 9 (SIGKILL)`), once
    /// [`TcgVm::wait`] has seen it end.
    pub fn qemu_ended(&self) -> Option<String> {
        self.qemu_ended.lock_unpoisoned().clone()
    }

    /// QEMU's exit status, or `None` when it was killed at `timeout`.
    fn wait_for_qemu(&self, timeout: Option<Duration>) -> Result<Option<std::process::ExitStatus>, VmError> {
        let status = loop {
            let mut guard = self.child.lock_unpoisoned();
            let Some(child) = guard.as_mut() else {
                return Err(VmError::Wait(std::io::Error::other("already waited for")));
            };
            if let Some(status) = child.try_wait().map_err(VmError::Wait)? {
                guard.take();
                break Some(status);
            }
            if timeout.is_some_and(|t| self.created.elapsed() >= t) {
                let _ = child.kill();
                let _ = child.wait();
                guard.take();
                break None;
            }
            drop(guard);
            // Woken by QEMU's exit; at least once a second, to notice the timeout.
            let left = timeout.map_or(Duration::from_secs(1), |t| t.saturating_sub(self.created.elapsed()));
            self.exit_watch.wait(left.min(Duration::from_secs(1)));
        };
        Ok(status)
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

impl Drop for TcgVm {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock_unpoisoned().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::TcgLayoutOptions;
    use crate::qemu::SerialTarget;
    use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, MIB};

    #[test]
    fn missing_qemu_is_an_error_that_says_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let dimms = vec![DimmConfig::with_defaults(0, dir.path().join("d0"), 64 * MIB)];
        let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
        let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap();
        let platform = NvdimmPlatform::ephemeral(config, layout.platform_layout()).unwrap();
        let spec = TcgVmSpec {
            qemu: dir.path().join("no-such-qemu"),
            kernel: dir.path().join("vmlinux"),
            initrd: None,
            cmdline: String::new(),
            cpus: 1,
            memory_bytes: 64 * MIB,
            layout,
            platform: Arc::new(Mutex::new(platform)),
            work_dir: dir.path().join("run"),
            console: SerialTarget::Stdio,
            console_input: false,
            agent_socket: None,
        };
        let err = TcgVm::start(&spec).err().expect("starting a missing QEMU must fail");
        assert!(matches!(err, VmError::Setup(SetupError::QemuMissing { .. })), "{err}");
        assert!(err.to_string().contains("qemu-system-x86"), "{err}");
    }
}
