//! `vnvdimm run`: validates every option before anything starts (errors name the
//! option), then picks the backend. Under `--backend kvm` the host's KVM must be
//! able to deliver exceptions to a long-mode guest (kvm_check); where it cannot,
//! the command stops and points to `--backend tcg`.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use nvdimm_model::config::parse_size;
use vnvdimm_machine::{Machine, MachineConfig};

use vnvdimm_vmm::launch::FailureKind;

use crate::cli::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Kvm,
    Tcg,
    Auto,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kernel to boot directly: bzImage or ELF vmlinux. Defaults to the built-in guest
    /// image (images/build-guest.sh). Without --initramfs, the image's initramfs.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// The --kernel's modules: an INSTALL_MOD_PATH tree, an unpacked kernel package, a
    /// lib/modules/<release> directory or a kernel build tree (docs/kernels.md).
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub initramfs: Option<PathBuf>,
    #[arg(long, value_name = "STRING", default_value = "console=ttyS0 reboot=acpi panic=-1")]
    pub cmdline: String,
    /// Guest RAM, e.g. 512M or 2G (a multiple of 2M).
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,
    /// path=FILE,size=SIZE[,label-size=..,handle=..,serial=..,flush-hints=..,readonly=on,...]; repeatable.
    #[arg(long, value_name = "SPEC", required = true)]
    pub nvdimm: Vec<String>,
    /// dimms=I,J[,..][,line=SIZE]: interleave consecutive --nvdimm DIMMs behind one
    /// system-address range (line 4K by default); repeatable (docs/interleave-sets.md).
    #[arg(long = "interleave-set", value_name = "SPEC")]
    pub interleave_sets: Vec<String>,
    /// live (ndctl activate-firmware works, and staged images also run at the next
    /// boot) or next-boot (no activation functions).
    #[arg(long, value_name = "MODE", default_value = "live")]
    pub firmware_activation: String,
    /// cpu-cache or memory-controller.
    #[arg(long, value_name = "DOMAIN", default_value = "cpu-cache")]
    pub persistence_domain: String,
    /// Serve the control API on this Unix socket.
    #[arg(long, value_name = "PATH")]
    pub api_socket: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
}

/// Everything checked; nothing started yet.
#[derive(Debug)]
pub struct Validated {
    pub machine: Machine,
}

fn must_be_file(option: &str, path: &Path) -> Result<u64, Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::usage(format!("{option}: {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Failure::usage(format!("{option}: {} is not a regular file", path.display())));
    }
    Ok(meta.len())
}

/// The API socket path must be free for a socket (an old socket is replaced) in an
/// existing directory.
fn check_api_socket(path: &Path) -> Result<(), Failure> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => Err(Failure::usage(format!(
            "--api-socket {}: the path exists and is not a socket; choose another path or remove it",
            path.display()
        ))),
        _ => match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(Failure::usage(format!(
                "--api-socket {}: directory {} does not exist",
                path.display(),
                dir.display()
            ))),
            _ => Ok(()),
        },
    }
}

/// `--modules` brings the modules of the user's `--kernel` to the default image's
/// initramfs; without either it means nothing.
fn check_modules_options(args: &RunArgs) -> Result<(), Failure> {
    match (&args.modules, &args.kernel, &args.initramfs) {
        (Some(_), None, _) => Err(Failure::usage(
            "--modules DIR needs --kernel: it gives the modules of your own kernel (the default image's kernel has its own)",
        )),
        (Some(_), Some(_), Some(_)) => Err(Failure::usage(
            "--modules adds modules to the default image's initramfs; with your own --initramfs, put the modules into it instead",
        )),
        _ => Ok(()),
    }
}

pub fn validate(args: &RunArgs) -> Result<Validated, Failure> {
    check_modules_options(args)?;
    if let Some(kernel) = &args.kernel {
        must_be_file("--kernel", kernel)?;
        crate::kernel_check::check_kernel(kernel)?;
        if let Some(dir) = &args.modules {
            crate::modules::check(kernel, dir)?;
        }
    }
    if let Some(initramfs) = &args.initramfs {
        must_be_file("--initramfs", initramfs)?;
    }
    if let Some(socket) = &args.api_socket {
        check_api_socket(socket)?;
    }
    let memory = parse_size(&args.memory).map_err(|e| Failure::usage(format!("--memory: {}: {e}", args.memory)))?;
    let config = MachineConfig::new(memory, args.cpus).map_err(|e| Failure::usage(e.to_string()))?;
    let platform = crate::platform_args::platform_config(args)?;
    for (index, dimm) in platform.dimms.iter().enumerate() {
        let option = format!("--nvdimm #{index} path=");
        let len = must_be_file(&option, &dimm.path)?;
        if len < dimm.size {
            return Err(Failure::usage(format!(
                "--nvdimm #{index}: backing file {} has {len} bytes, less than size={}; grow it (truncate -s) or lower size=",
                dimm.path.display(),
                dimm.size
            )));
        }
    }
    let machine = Machine::new(config, platform).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(Validated { machine })
}

/// KVM: Linux booted directly (linux_boot), console on `out`, the control API on
/// `--api-socket`; the exit status is the guest's outcome (0 power-off/reset, 3 crash).
fn run_kvm(args: &RunArgs, machine: Machine, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let work = crate::work_dir::create().map_err(|e| Failure::start_host(format!("creating a work directory: {e}")))?;
    let boot = crate::guest_boot::guest_boot(args, work.path(), err)?;
    let spec = vnvdimm_vmm::arch::x86_64::linux_boot::BootSpec {
        kernel: boot.kernel,
        initramfs: boot.initramfs,
        cmdline: boot.cmdline,
    };
    let api_socket = args.api_socket.as_deref();
    let mut input = crate::console_input::ConsoleInput::from_stdin();
    let keyboard = input.as_ref().and_then(|i| Some((i.source.try_clone().ok()?, i.escape)));
    let outcome = crate::console_pipe::run_with_console(out, |console| {
        vnvdimm_vmm::launch::run(machine, console, api_socket, |vm| {
            let map = vm.machine().memory_map.clone();
            let loaded = vnvdimm_vmm::arch::x86_64::linux_boot::load(vm.memory(), &map, &spec)?;
            vnvdimm_vmm::arch::x86_64::linux_boot::configure_vcpu(&vm.vcpus()[0], &loaded.entry)?;
            if let Some((source, escape)) = keyboard {
                vm.attach_console_input(source, escape)?;
            }
            Ok(())
        }, |backend, host_io| {
            use vnvdimm_control::Backend as _;
            crate::stop_signals::forward_to(host_io, move || {
                crate::stop_signals::already_stopping_is_fine(backend.power_off())
            });
        })
    })
    .map_err(|e| Failure::other(format!("--backend kvm: cannot set up the console pipe: {e}")))?
    .map_err(|e| {
        let message = format!("--backend kvm: {e}");
        match e.kind() {
            FailureKind::Usage => Failure::usage(message),
            FailureKind::StartHost => Failure::start_host(message),
            FailureKind::Run => Failure::other(message),
        }
    })?;
    if let Some(input) = &mut input {
        input.restore();
    }
    let _ = writeln!(err, "vnvdimm: {outcome}");
    Ok(outcome.exit_status())
}

pub fn run(args: &RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let _validated = validate(args)?;
    if args.backend == Backend::Tcg {
        return crate::run_tcg::run(args, out, err);
    }
    let kvm = match args.backend {
        Backend::Tcg => None,
        Backend::Kvm | Backend::Auto => Some(vnvdimm_vmm::kvm_check::check()),
    };
    match (args.backend, kvm) {
        (Backend::Kvm, Some(Err(e))) => Err(Failure::other(format!("--backend kvm: {e}"))),
        (_, Some(Ok(_))) => run_kvm(args, _validated.machine, out, err),
        (_, _) => {
            let _ = writeln!(err, "vnvdimm: --backend auto chose tcg (KVM cannot run Linux here)");
            crate::run_tcg::run(args, out, err)
        }
    }
}
