//! `vnvdimm run --backend tcg` (and `--backend auto` where KVM cannot run Linux): the
//! guest under QEMU TCG on the user's DIMM backing files, console on stdout, control
//! API on `--api-socket`. Options were validated by `run::validate`; what only TCG
//! imposes (RAM below 3 GiB, DIMM windows within 40 address bits) is checked here, still
//! before QEMU starts.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nvdimm_model::clock::SystemClock;
use nvdimm_model::config::{parse_size, MIB};
use nvdimm_model::NvdimmPlatform;
use vnvdimm_control::lifecycle::{self, LifecycleError, StartedGuest};
use vnvdimm_control::Backend;
use vnvdimm_tcg::qemu::{QemuCommand, SerialTarget};
use vnvdimm_tcg::{TcgLayout, TcgLayoutOptions, TcgVm, TcgVmSpec};

use crate::cli::Failure;
use crate::guest_boot::{guest_boot, GuestBoot};
use crate::run::RunArgs;

/// Smallest `--memory` the TCG layout accepts: 64 MiB high RAM (initramfs) + 64 MiB low.
pub const MIN_MEMORY: u64 = 128 * MIB;

/// Splits `--memory` into low RAM (from 1 MiB) and high RAM (at the top of the RAM below
/// 4 GiB, where QEMU puts the initramfs): a quarter high, between 64 and 256 MiB.
pub fn layout_options(memory: u64) -> Result<TcgLayoutOptions, Failure> {
    if memory < MIN_MEMORY {
        return Err(Failure::usage(format!(
            "--memory: {} MiB is too small for --backend tcg; give at least {} MiB",
            memory / MIB,
            MIN_MEMORY / MIB
        )));
    }
    let high_ram = (memory / 4).clamp(64 * MIB, 256 * MIB) / (2 * MIB) * (2 * MIB);
    Ok(TcgLayoutOptions { low_ram_end: memory - high_ram, high_ram, ..TcgLayoutOptions::default() })
}

/// Everything `vnvdimm run --backend tcg` decides before starting QEMU.
pub struct Prepared {
    pub spec: TcgVmSpec,
    pub api_socket: Option<PathBuf>,
    /// Removed when dropped; holds the RAM files, tables and QMP socket.
    pub work: tempfile::TempDir,
}

/// Checks what TCG adds to the shared validation, opens the device model on the
/// backing files (sidecars next to them) and builds the spec. Nothing is started.
pub fn prepare(args: &RunArgs, err: &mut dyn Write) -> Result<Prepared, Failure> {
    let memory = parse_size(&args.memory).map_err(|e| Failure::usage(format!("--memory: {}: {e}", args.memory)))?;
    let config = crate::platform_args::platform_config(args)?;
    let layout = TcgLayout::new(&config, layout_options(memory)?)
        .map_err(|e| Failure::usage(format!("--memory/--nvdimm (--backend tcg): {e}")))?;
    let work = crate::work_dir::create().map_err(|e| Failure::start_host(format!("creating a work directory: {e}")))?;
    let GuestBoot { kernel, initramfs: initrd, cmdline } = guest_boot(args, work.path(), err)?;
    // Last: the first step that writes the user's files (the DIMMs' state sidecars).
    let platform =
        NvdimmPlatform::open(config, layout.platform_layout(), Arc::new(SystemClock::new())).map_err(|e| {
            match e.is_usage() {
                true => Failure::usage(format!("--nvdimm: {e}")),
                false => Failure::start_host(format!("--nvdimm: {e}")),
            }
        })?;
    let spec = TcgVmSpec {
        qemu: QemuCommand::default_qemu(),
        kernel,
        initrd,
        cmdline,
        cpus: u32::from(args.cpus),
        memory_bytes: memory,
        layout,
        platform: Arc::new(Mutex::new(platform)),
        work_dir: work.path().to_path_buf(),
        console: SerialTarget::Stdio,
        console_input: false,
        // Always there: `vnvdimm ctl exec` / `POST /exec` reach the guest through it.
        agent_socket: Some(work.path().join("agent.sock")),
    };
    Ok(Prepared { spec, api_socket: args.api_socket.clone(), work })
}

/// QEMU running the guest: the backend the API and the stop paths use.
struct StartedQemu(Arc<TcgVm>);

impl StartedGuest for StartedQemu {
    fn backend(&self) -> Arc<dyn Backend> {
        self.0.clone()
    }

    fn host_io(&self) -> &vnvdimm_vmm::host_io::HostIo {
        self.0.host_io()
    }
}

/// The exit status and message of a run that failed, by the step that failed.
fn failure(e: LifecycleError<vnvdimm_tcg::vm::VmError>) -> Failure {
    let message = format!("--backend tcg: {e}");
    match e {
        LifecycleError::Api(_) => Failure::usage(message),
        _ => Failure::other(message),
    }
}

/// Runs the guest to its end; returns the exit status (docs/tcg-backend.md).
pub fn run(args: &RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let Prepared { mut spec, api_socket, work: _work } = prepare(args, err)?;
    let mut input = crate::console_input::ConsoleInput::from_stdin();
    spec.console_input = input.is_some();
    let platform = spec.platform.clone();
    let debug = std::env::var_os("VNVDIMM_DEBUG").is_some();
    let mut qemu_ended = None;
    let outcome = lifecycle::run(
        &platform,
        api_socket.as_deref(),
        || {
            let vm = Arc::new(TcgVm::start(&spec)?);
            if debug {
                let _ = writeln!(err, "vnvdimm: {}", vm.command_line());
            }
            Ok(StartedQemu(vm))
        },
        |StartedQemu(vm)| {
            // The loop's sources are the VM's own: they hold it weakly, or it could never go.
            let stopper = Arc::downgrade(vm);
            crate::stop_signals::forward_to(vm.host_io(), move || match stopper.upgrade() {
                Some(vm) => crate::stop_signals::already_stopping_is_fine(vm.power_off()),
                None => Ok(()),
            });
            if let (Some(keyboard), Some(qemu_stdin)) = (&input, vm.take_console_input()) {
                forward_keyboard(keyboard, qemu_stdin, vm);
            }
            Ok(())
        },
        |StartedQemu(vm)| {
            if let Some(console) = vm.take_console() {
                copy_console(console, out);
            }
            let exit = vm.wait(None)?;
            // Always said: a guest power-off and a QEMU killed by a signal after it can
            // look alike otherwise.
            qemu_ended = vm.qemu_ended();
            Ok(exit)
        },
    )
    .map_err(failure)?;
    if let Some(input) = &mut input {
        input.restore();
    }
    let _ = writeln!(err, "vnvdimm: {outcome} ({})", qemu_ended.unwrap_or_default());
    Ok(outcome.exit_status())
}

/// Copies QEMU's console output to `out` until QEMU closes it.
fn copy_console(mut console: impl Read, out: &mut dyn Write) {
    let mut buf = [0u8; 4096];
    loop {
        match console.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                // A closed stdout must not stop the guest: keep draining the pipe.
                let _ = out.write_all(&buf[..n]);
                let _ = out.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Feeds the console's input to QEMU's stdin (its console chardev) from the VM's host
/// I/O loop, with the same Ctrl-A commands as the KVM backend's console. Without it the
/// guest runs on, deaf: said on stderr.
fn forward_keyboard(input: &crate::console_input::ConsoleInput, qemu_stdin: vnvdimm_tcg::console_in::ConsoleIn, vm: &Arc<TcgVm>) {
    let weak = Arc::downgrade(vm);
    let escape = input.escape.then(|| {
        vnvdimm_vmm::devices::console_escape::ConsoleEscape::new(Box::new(move || {
            if let Some(vm) = weak.upgrade() {
                let _ = vm.power_off();
            }
        }))
    });
    let feed = input
        .source
        .try_clone()
        .and_then(|source| crate::keyboard_to_qemu::KeyboardToQemu::new(source, qemu_stdin, escape));
    let added = match feed {
        Ok(feed) => vm.host_io().add(Box::new(feed)).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = added {
        log::warn!("console input: {e}; the guest gets no keyboard input");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_split_keeps_room_for_the_initramfs() {
        let o = layout_options(512 * MIB).unwrap();
        assert_eq!(o.high_ram, 128 * MIB);
        assert_eq!(o.low_ram_end + o.high_ram, 512 * MIB);
        assert_eq!(layout_options(4096 * MIB).unwrap().high_ram, 256 * MIB);
        assert_eq!(layout_options(130 * MIB).unwrap().high_ram, 64 * MIB);
        let e = layout_options(64 * MIB).err().unwrap();
        assert!(e.usage && e.message.starts_with("--memory"), "{}", e.message);
    }
}
