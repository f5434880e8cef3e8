//! The binary's logger: stderr, one line per message prefixed `vnvdimm:` as the
//! VMM's messages always were. Warnings and errors by default; `VNVDIMM_DEBUG=1`
//! adds the debug messages about odd guest accesses; `RUST_LOG` overrides both.

use std::io::Write;

pub fn init() {
    let default = if std::env::var_os("VNVDIMM_DEBUG").is_some() { "debug" } else { "warn" };
    let env = env_logger::Env::default().default_filter_or(default);
    // A second init (tests, embedders with their own logger) keeps the first logger.
    let _ = env_logger::Builder::from_env(env)
        .format(|out, record| match record.level() {
            log::Level::Error | log::Level::Warn => writeln!(out, "vnvdimm: {}", record.args()),
            level => writeln!(out, "vnvdimm {}: {}", level.as_str().to_lowercase(), record.args()),
        })
        .try_init();
}
