//! `vnvdimm acpi dump`: builds the machine's ACPI tables and writes each as a raw
//! file named by its signature, ready for `iasl -d`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use nvdimm_model::config::parse_size;
use nvdimm_model::{PersistenceDomain, PlatformConfig};
use vnvdimm_machine::config::{DEFAULT_CPUS, DEFAULT_MEMORY};
use vnvdimm_machine::{Machine, MachineConfig, MachineError};

use crate::cli::Failure;

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Directory to write the tables to; created if missing, existing files are replaced.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// One NVDIMM: path=FILE,size=SIZE[,label-size=..,handle=..,serial=..,...]; repeat for more.
    /// Without it: two 1G DIMMs with 128K label areas. Backing files are never opened.
    #[arg(long = "nvdimm", value_name = "SPEC")]
    pub nvdimms: Vec<String>,
    /// dimms=I,J[,..][,line=SIZE]: interleave consecutive DIMMs (see `vnvdimm run --help`).
    #[arg(long = "interleave-set", value_name = "SPEC")]
    pub interleave_sets: Vec<String>,
    /// Persistence domain published in the NFIT: cpu_cache, memory_controller or none.
    #[arg(long, value_name = "DOMAIN", default_value = "cpu_cache")]
    pub persistence_domain: String,
    /// Guest RAM (not counting NVDIMMs), e.g. 512M or 4G.
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_MEMORY, value_parser = parse_size)]
    pub memory: u64,
    /// Number of vCPUs (one local APIC each in the MADT).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CPUS)]
    pub cpus: u8,
}

/// The platform the options describe: the built-in two-DIMM default unless `--nvdimm` is given.
pub fn platform_config(args: &DumpArgs) -> Result<PlatformConfig, Failure> {
    if args.nvdimms.is_empty() {
        let domain: PersistenceDomain = args
            .persistence_domain
            .parse()
            .map_err(|e: nvdimm_model::config::ConfigError| Failure::usage(e.to_string()))?;
        let mut platform = PlatformConfig::default_in(Path::new("."));
        platform.persistence_domain = domain;
        return platform.with_interleave_sets(&args.interleave_sets).map_err(|e| Failure::usage(e.to_string()));
    }
    PlatformConfig::parse(&args.nvdimms, &args.persistence_domain)
        .and_then(|p| p.with_interleave_sets(&args.interleave_sets))
        .map_err(|e| Failure::usage(e.to_string()))
}

/// Builds the machine the options describe. Everything is checked here, before any file is written.
pub fn build_machine(args: &DumpArgs) -> Result<Machine, Failure> {
    let platform = platform_config(args)?;
    let config = MachineConfig { memory: args.memory, cpus: args.cpus };
    Machine::new(config, platform).map_err(|e| match e {
        // A table generator producing garbage is our bug, not the user's.
        MachineError::Acpi(vnvdimm_machine::AcpiError::BadTable { .. }) => Failure::other(e.to_string()),
        e => Failure::usage(e.to_string()),
    })
}

pub fn run(args: &DumpArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let machine = build_machine(args)?;
    let io = |what: String| move |e: std::io::Error| Failure::other(format!("{what}: {e}"));
    std::fs::create_dir_all(&args.out).map_err(io(format!("--out: cannot create {}", args.out.display())))?;
    for (name, guest_addr, bytes) in machine.acpi.dump_files() {
        let path = args.out.join(&name);
        std::fs::write(&path, bytes).map_err(io(format!("cannot write {}", path.display())))?;
        writeln!(out, "{}  {} bytes, guest address {:#x}", path.display(), bytes.len(), guest_addr)
            .map_err(io("cannot write to stdout".to_string()))?;
    }
    Ok(())
}
