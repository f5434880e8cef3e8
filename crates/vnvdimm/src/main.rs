//! `vnvdimm` command-line entry point. All logic lives in the library (`vnvdimm::cli`)
//! so tests can drive the exact same code without spawning a process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = vnvdimm::cli::run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(code)
}
