//! `vnvdimm` command-line entry point. All logic lives in the library (`vnvdimm::cli`)
//! so tests can drive the exact same code without spawning a process.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before any thread exists: `vnvdimm run` turns Ctrl-C and kill into a clean
    // power-off. Other subcommands keep the default actions (a Ctrl-C'd `ctl exec` ends).
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        vnvdimm::stop_signals::block_in_main();
    }
    vnvdimm_host_log::init();
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        vnvdimm::console_input::use_stdin();
    }
    let code = vnvdimm::cli::run(std::env::args_os(), &mut std::io::stdout(), &mut std::io::stderr());
    ExitCode::from(code)
}
