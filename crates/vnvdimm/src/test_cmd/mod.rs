//! `vnvdimm test`: the built-in scenarios (crates/scenarios) against a kernel, for the CI
//! of guest dax and libnvdimm drivers (docs/vnvdimm-test.md). Each scenario runs in a
//! child process of this binary (`--run-one`), `--jobs` at a time; results are printed
//! as they finish, summed up, and written as JUnit XML and KTAP on request.

mod pool;
mod report;
mod script;
mod select;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use vnvdimm_scenarios::{Guest, GuestBackend, GuestKernel, SCENARIOS};

use crate::cli::{Failure, EXIT_FAILURE, EXIT_OK};
use crate::run::Backend;
use report::Outcome;
use select::Shard;

/// Each VM as `--jobs` counts it: 512 MiB of guest RAM plus QEMU's or the VMM's own.
const MEMORY_PER_VM: u64 = 1536 << 20;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Kernel to test (bzImage or vmlinux); default: the built-in image's.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Its modules (as `vnvdimm run --modules`: an install tree, an unpacked package or a build tree).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    pub modules: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Run the scenarios whose name contains PATTERN (repeatable: any of them).
    #[arg(long, value_name = "PATTERN")]
    pub filter: Vec<String>,
    /// List the scenarios (after --filter and --shard) and exit.
    #[arg(long)]
    pub list: bool,
    /// Scenarios at once (default: from the cores and the memory available).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: Option<u16>,
    /// Run only shard I of N (1-based; each of N machines takes one).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Write JUnit XML results to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print KTAP results on stdout (the per-scenario lines go to stderr then).
    #[arg(long)]
    pub tap: bool,
    /// Keep every scenario's work directory (backing files, sockets: DIR/NN-sX/) and log (DIR/NAME.log) in DIR.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Boot the guest, run FILE on the host with VNVDIMM_API_SOCKET set; its exit status is the result.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["filter", "list", "shard"])]
    pub script: Option<PathBuf>,
    /// With --script: as in `vnvdimm run` (default: one sparse 1 GiB DIMM with a label area).
    #[arg(long, value_name = "SPEC", requires = "script")]
    pub nvdimm: Vec<String>,
    /// With --script: guest RAM.
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,
    /// With --script: vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u8,
    /// With --script: as in `vnvdimm run`.
    #[arg(long, value_name = "DOMAIN", default_value = "cpu-cache")]
    pub persistence_domain: String,
    /// Internal: run this one scenario in this process (what each child does).
    #[arg(long, value_name = "NAME", hide = true)]
    pub run_one: Option<String>,
}

pub fn run(args: &TestArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    if let Some(name) = &args.run_one {
        return run_one(args, name);
    }
    let backend = resolve_backend(args.backend);
    if args.list {
        for name in selection(args)? {
            let summary = vnvdimm_scenarios::find(name).map_or("", |s| s.summary);
            let _ = writeln!(out, "{name:<52} {summary}");
        }
        return Ok(EXIT_OK);
    }
    let work = WorkDir::new(args.keep.as_deref())?;
    let outcomes = match &args.script {
        Some(file) => vec![run_script(args, backend, file, work.path())?],
        None => run_scenarios(args, backend, work.path(), out, err)?,
    };
    report(args, backend, &outcomes, out, err)?;
    Ok(if outcomes.iter().all(|o| o.passed) { EXIT_OK } else { EXIT_FAILURE })
}

fn selection(args: &TestArgs) -> Result<Vec<&'static str>, Failure> {
    let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    select::select(&names, &args.filter, args.shard).map_err(|e| Failure::usage(e.to_string()))
}

/// `auto`: KVM where it can boot Linux, TCG otherwise (as `vnvdimm run`).
fn resolve_backend(backend: Backend) -> GuestBackend {
    match backend {
        Backend::Kvm => GuestBackend::Kvm,
        Backend::Tcg => GuestBackend::Tcg,
        Backend::Auto if vnvdimm_vmm::kvm_check::check().is_ok() => GuestBackend::Kvm,
        Backend::Auto => GuestBackend::Tcg,
    }
}

fn run_scenarios(args: &TestArgs, backend: GuestBackend, work: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<Vec<Outcome>, Failure> {
    let names = selection(args)?;
    let exe = std::env::current_exe().map_err(|e| Failure::other(format!("cannot find the vnvdimm binary: {e}")))?;
    let jobs = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Short: the scenario's API socket lives below it, and a Unix socket's path
            // must fit in 108 bytes.
            let scenario_dir = work.join(format!("{:02}-{}", i + 1, name.split('_').next().unwrap_or("s")));
            std::fs::create_dir_all(&scenario_dir)
                .map_err(|e| Failure::other(format!("cannot create {}: {e}", scenario_dir.display())))?;
            let mut command = Command::new(&exe);
            command.args(["test", "--run-one", name, "--backend", backend.name()]);
            if let Some(kernel) = &args.kernel {
                command.arg("--kernel").arg(kernel);
            }
            if let Some(modules) = &args.modules {
                command.arg("--modules").arg(modules);
            }
            // The scenario's own work directory goes below this one; kept with --keep.
            command.env("TMPDIR", &scenario_dir);
            if args.keep.is_some() {
                command.env("VNV_KEEP_WORK", "1");
            }
            Ok(pool::Job { name: name.to_string(), command, log: work.join(format!("{name}.log")) })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    let parallel = args.jobs.map_or_else(default_jobs, usize::from);
    // With --tap, stdout carries the KTAP report alone.
    let lines: &mut dyn Write = if args.tap { err } else { out };
    let _ = writeln!(lines, "vnvdimm test: {} scenario(s) under {}, {parallel} at a time", jobs.len(), backend.name());
    let progress = std::io::stderr().is_terminal();
    let outcomes = pool::run_all(jobs, parallel, |o, done, total| {
        if progress {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
        let _ = writeln!(lines, "{:<4} {:<52} {:>7.1} s", if o.passed { "ok" } else { "FAIL" }, o.name, o.time.as_secs_f64());
        if !o.passed {
            let _ = writeln!(lines, "---- {} ----\n{}\n----", o.name, script::tail(&o.output, 80));
        }
        if progress && done < total {
            let _ = write!(std::io::stderr(), "[{done}/{total} done]");
            let _ = std::io::stderr().flush();
        }
    });
    Ok(outcomes)
}

fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    select::default_jobs(cores, available_memory(), MEMORY_PER_VM)
}

/// MemAvailable from /proc/meminfo, in bytes; a missing value counts as room for one VM.
fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(MEMORY_PER_VM, |kib| kib * 1024)
}

fn run_script(args: &TestArgs, backend: GuestBackend, file: &Path, work: &Path) -> Result<Outcome, Failure> {
    if !file.is_file() {
        return Err(Failure::usage(format!("--script {}: no such file", file.display())));
    }
    let nvdimms = if args.nvdimm.is_empty() { script::default_nvdimms(work).map_err(Failure::other)? } else { args.nvdimm.clone() };
    let mut run_args: Vec<String> = vec![
        "--backend".into(),
        backend.name().into(),
        "--memory".into(),
        args.memory.clone(),
        "--cpus".into(),
        args.cpus.to_string(),
        "--persistence-domain".into(),
        args.persistence_domain.clone(),
    ];
    if let Some(kernel) = &args.kernel {
        run_args.extend(["--kernel".into(), kernel.display().to_string()]);
    }
    if let Some(modules) = &args.modules {
        run_args.extend(["--modules".into(), modules.display().to_string()]);
    }
    for n in nvdimms {
        run_args.extend(["--nvdimm".into(), n]);
    }
    Ok(script::ScriptRun { script: file, run_args, work }.run())
}

fn report(args: &TestArgs, backend: GuestBackend, outcomes: &[Outcome], out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.passed).map(|o| o.name.as_str()).collect();
    let total: f64 = outcomes.iter().map(|o| o.time.as_secs_f64()).sum();
    if args.script.is_some() {
        let o = &outcomes[0];
        let _ = writeln!(err, "{:<4} {} ({:.1} s)", if o.passed { "ok" } else { "FAIL" }, o.name, o.time.as_secs_f64());
        if !o.passed || !o.output.trim().is_empty() {
            let _ = writeln!(err, "{}", o.output.trim_end());
        }
    }
    let summary = format!(
        "{} passed, {} failed of {} ({:.1} s of scenario time){}",
        outcomes.len() - failed.len(),
        failed.len(),
        outcomes.len(),
        total,
        if failed.is_empty() { String::new() } else { format!("; failed: {}", failed.join(", ")) }
    );
    if args.tap {
        let _ = write!(out, "{}", report::ktap(outcomes));
        let _ = writeln!(err, "{summary}");
    } else {
        let _ = writeln!(out, "{summary}");
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(&format!("vnvdimm.{}", backend.name()), outcomes))
            .map_err(|e| Failure::other(format!("--junit {}: {e}", path.display())))?;
    }
    if let Some(keep) = &args.keep {
        let _ = writeln!(err, "work directories and logs kept in {}", keep.display());
    }
    Ok(())
}

/// The child's side: one scenario in this process; exit 0 when it passed. A failing
/// scenario panics with its evidence, which the default hook prints on stderr.
fn run_one(args: &TestArgs, name: &str) -> Result<u8, Failure> {
    let scenario = vnvdimm_scenarios::find(name).ok_or_else(|| Failure::usage(format!("no scenario named {name}")))?;
    vnvdimm_scenarios::set_runner(crate::cli::run_args);
    let kernel = match &args.kernel {
        Some(vmlinux) => GuestKernel::Custom { vmlinux: vmlinux.clone(), modules: args.modules.clone() },
        None => GuestKernel::Debian61,
    };
    let guest = Guest { backend: resolve_backend(args.backend), kernel };
    let run = scenario.run;
    match std::panic::catch_unwind(move || run(guest)) {
        Ok(()) => Ok(EXIT_OK),
        Err(_) => Ok(EXIT_FAILURE),
    }
}

/// Where scenarios keep their files: `--keep DIR`, else a temporary directory removed at
/// the end.
enum WorkDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    fn new(keep: Option<&Path>) -> Result<Self, Failure> {
        match keep {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Failure::usage(format!("--keep {}: {e}", dir.display())))?;
                let dir = dir.canonicalize().map_err(|e| Failure::usage(format!("--keep {}: {e}", dir.display())))?;
                Ok(WorkDir::Kept(dir))
            }
            None => tempfile::Builder::new()
                .prefix("vnvdimm-test-")
                .tempdir()
                .map(WorkDir::Temp)
                .map_err(|e| Failure::other(format!("cannot create a work directory: {e}"))),
        }
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Kept(dir) => dir,
            WorkDir::Temp(temp) => temp.path(),
        }
    }
}
