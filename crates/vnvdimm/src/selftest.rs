//! `vnvdimm selftest`: runs the bare-metal firmware checks under KVM on this host
//! and prints one line per check. Exit status 1 if any check failed.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use vnvdimm_selftest::selftest::{self, Status};

use crate::cli::Failure;

#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Put the checks' sparse backing files here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: &SelftestArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().map_err(|e| Failure::other(format!("cannot create a temporary directory: {e}")))?;
            temp.path().to_path_buf()
        }
    };
    let checks = selftest::run_all(&dir);
    let mut failed = false;
    for check in &checks {
        failed |= matches!(check.status, Status::Fail(_));
        let _ = writeln!(out, "{check}");
    }
    let linux = match vnvdimm_vmm::kvm_check::check() {
        Ok(_) => "KVM can deliver exceptions: Linux guests can run under --backend kvm on this host".to_string(),
        Err(e) => format!("Linux guests cannot run under KVM here: {e}"),
    };
    let _ = writeln!(out, "NOTE    {linux}");
    Ok(if failed { crate::cli::EXIT_FAILURE } else { crate::cli::EXIT_OK })
}
