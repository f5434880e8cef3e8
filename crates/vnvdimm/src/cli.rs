//! The command tree. Each subcommand's arguments and logic live in its own module;
//! this file only dispatches and turns outcomes into exit codes.

use std::ffi::OsString;
use std::io::Write;

use clap::{Parser, Subcommand};

use crate::{acpi_dump, ctl, demo, firmware_image, run as run_cmd, selftest, test_cmd};

pub use vnvdimm_control::exit_status::{
    FAILURE as EXIT_FAILURE, OK as EXIT_OK, START_HOST as EXIT_START_HOST, USAGE as EXIT_USAGE,
};

#[derive(Debug, Parser)]
#[command(name = "vnvdimm", version, about = "A VMM with emulated NVDIMMs Linux cannot tell from real ones")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// ACPI tables of the guest machine.
    #[command(subcommand)]
    Acpi(AcpiCommand),
    /// Boot Debian's 6.1 kernel under QEMU TCG on the default two NVDIMMs and show what ndctl sees.
    Demo(demo::DemoArgs),
    /// Run a guest (Linux) on virtual NVDIMMs. Exit status: the guest's outcome (docs/running.md).
    Run(run_cmd::RunArgs),
    /// Run the bare-metal firmware checks under KVM on this host and report each.
    Selftest(selftest::SelftestArgs),
    /// Control a running VMM through its API socket (docs/api.md).
    Ctl(ctl::CtlArgs),
    /// Run the built-in scenarios (or your own --script) against a kernel: CI for dax and libnvdimm (docs/vnvdimm-test.md).
    Test(test_cmd::TestArgs),
    /// Write a firmware image the emulated DIMMs accept, for `ndctl update-firmware` (docs/firmware-update.md).
    FirmwareImage(firmware_image::FirmwareImageArgs),
}

#[derive(Debug, Subcommand)]
pub enum AcpiCommand {
    /// Write every ACPI table of the machine to a directory, one raw file per table.
    Dump(acpi_dump::DumpArgs),
}

/// A failed command: the message to print and whether the user's input was at fault.
#[derive(Debug)]
pub struct Failure {
    pub usage: bool,
    pub message: String,
    /// An exit code other than [`EXIT_USAGE`] / [`EXIT_FAILURE`].
    pub code: Option<u8>,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { usage: true, message: message.into(), code: None }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Failure { usage: false, message: message.into(), code: None }
    }

    /// The host could not start what the options asked for ([`EXIT_START_HOST`]).
    pub fn start_host(message: impl Into<String>) -> Self {
        Failure { usage: false, message: message.into(), code: Some(EXIT_START_HOST) }
    }
}

/// [`run`] with owned arguments: the shape `vnvdimm_scenarios::set_runner` takes.
pub fn run_args(args: Vec<String>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    run(args, out, err)
}

/// Parses `args` (program name first) and runs the command, writing normal output to
/// `out` and errors to `err`. Returns the process exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = e.render().to_string();
            // --help and --version are "errors" to clap but successes to the user.
            if !e.use_stderr() {
                let _ = out.write_all(text.as_bytes());
                return EXIT_OK;
            }
            let _ = err.write_all(text.as_bytes());
            return EXIT_USAGE;
        }
    };
    let result = match cli.command {
        Command::Acpi(AcpiCommand::Dump(args)) => acpi_dump::run(&args, out).map(|()| EXIT_OK),
        Command::Demo(args) => demo::run(&args, out).map(|()| EXIT_OK),
        Command::Run(args) => run_cmd::run(&args, out, err),
        Command::Selftest(args) => selftest::run(&args, out),
        Command::Ctl(args) => ctl::run(&args, out, err),
        Command::Test(args) => test_cmd::run(&args, out, err),
        Command::FirmwareImage(args) => firmware_image::run(&args, out).map(|()| EXIT_OK),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            let _ = writeln!(err, "error: {}", failure.message);
            match (failure.code, failure.usage) {
                (Some(code), _) => code,
                (None, true) => EXIT_USAGE,
                (None, false) => EXIT_FAILURE,
            }
        }
    }
}
