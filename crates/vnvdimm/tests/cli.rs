//! The real `vnvdimm` binary: exit codes and where messages go. The logic itself
//! is tested through `vnvdimm::cli::run` in tests/tests/acpi_golden.rs.

use std::process::Command;

fn vnvdimm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vnvdimm")).args(args).output().expect("run vnvdimm");
    (
        out.status.code().expect("exited normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dump_writes_every_table_and_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tables");
    let (code, stdout, stderr) = vnvdimm(&["acpi", "dump", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for sig in ["RSDP", "XSDT", "FACP", "APIC", "DSDT", "SSDT", "NFIT"] {
        let file = out.join(format!("{sig}.dat"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(&bytes[..4], if sig == "RSDP" { b"RSD " } else { sig.as_bytes() });
        assert_eq!(stdout.lines().filter(|l| l.contains(&format!("{sig}.dat"))).count(), 1, "{stdout}");
    }
}

#[test]
fn usage_errors_exit_2_name_the_option_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tables");
    let out = out.to_str().unwrap();
    for (extra, option) in [
        (["--nvdimm", "path=x,size=huge"], "--nvdimm"),
        (["--persistence-domain", "flash"], "--persistence-domain"),
        (["--cpus", "300"], "--cpus"),
    ] {
        let mut args = vec!["acpi", "dump", "--out", out];
        args.extend(extra);
        let (code, stdout, stderr) = vnvdimm(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(option), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(!std::path::Path::new(out).exists(), "{args:?} created {out}");
    }
    let (code, _, stderr) = vnvdimm(&["acpi", "dump"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--out"), "{stderr}");
}

#[test]
fn help_goes_to_stdout_with_exit_0() {
    let (code, stdout, _) = vnvdimm(&["acpi", "dump", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--persistence-domain"), "{stdout}");
}
