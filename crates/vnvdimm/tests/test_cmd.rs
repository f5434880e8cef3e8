//! `vnvdimm test` through the real binary: listing and selection, a real scenario run
//! with its JUnit and KTAP reports, and the user's own script passing and failing.

use std::path::Path;
use std::process::{Command, Output};

fn vnvdimm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnvdimm")).args(args).current_dir(dir).output().expect("run vnvdimm")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_shows_every_scenario_and_selection_errors_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = vnvdimm(&["test", "--list"], dir.path());
    assert!(out.status.success());
    let listed: Vec<String> = text(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect();
    let all: Vec<&str> = vnvdimm_scenarios::SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(listed, all);
    // --shard 1/2 and 2/2 together run each scenario exactly once.
    let names = |shard: &str| -> Vec<String> {
        let out = vnvdimm(&["test", "--list", "--shard", shard], dir.path());
        text(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect()
    };
    let (first, second) = (names("1/2"), names("2/2"));
    assert_eq!(first.len(), all.len().div_ceil(2));
    let mut both: Vec<String> = first.iter().chain(&second).cloned().collect();
    both.sort();
    let mut expected: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(both, expected, "each scenario in exactly one shard");
    for bad in [&["test", "--shard", "3/2"][..], &["test", "--filter", "no-such-scenario"], &["test", "--modules", "/tmp"]] {
        let out = vnvdimm(bad, dir.path());
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out.stderr));
    }
}

#[test]
fn a_scenario_run_reports_in_junit_and_ktap() {
    vnvdimm_scenarios::require_qemu();
    let dir = tempfile::tempdir().unwrap();
    let out = vnvdimm(
        &["test", "--backend", "tcg", "--filter", "s1_ndctl_list_cpu_cache", "--junit", "results.xml", "--tap"],
        dir.path(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("KTAP version 1\n1..1\nok 1 s1_ndctl_list_cpu_cache\n"), "{stdout}");
    assert!(stderr.contains("1 passed, 0 failed of 1"), "{stderr}");
    let xml = std::fs::read_to_string(dir.path().join("results.xml")).unwrap();
    assert!(xml.contains("tests=\"1\" failures=\"0\"") && xml.contains("name=\"s1_ndctl_list_cpu_cache\""), "{xml}");
}

#[test]
fn a_script_is_the_test_its_exit_status_the_result() {
    vnvdimm_scenarios::require_qemu();
    let dir = tempfile::tempdir().unwrap();
    // The script reaches the VM through VNVDIMM_API_SOCKET, which `vnvdimm ctl` reads.
    std::fs::write(
        dir.path().join("pass.sh"),
        "set -e\nvnvdimm ctl info | grep -q '\"dimm_count\": 1'\nvnvdimm ctl exec -- ndctl list -D | grep -q nmem0\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("fail.sh"), "vnvdimm ctl exec -- 'echo guest-side-failure; exit 7'\n").unwrap();
    let pass = vnvdimm(&["test", "--backend", "tcg", "--script", "pass.sh"], dir.path());
    assert_eq!(pass.status.code(), Some(0), "{}\n{}", text(&pass.stdout), text(&pass.stderr));
    let fail = vnvdimm(&["test", "--backend", "tcg", "--script", "fail.sh", "--junit", "r.xml"], dir.path());
    let stderr = text(&fail.stderr);
    assert_eq!(fail.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAIL script:fail.sh") && stderr.contains("guest-side-failure"), "{stderr}");
    let xml = std::fs::read_to_string(dir.path().join("r.xml")).unwrap();
    assert!(xml.contains("failures=\"1\"") && xml.contains("<failure"), "{xml}");
}

#[test]
fn the_documented_memory_failure_script_passes() {
    vnvdimm_scenarios::require_qemu();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/memory-failure.sh");
    let out = vnvdimm(&["test", "--backend", "tcg", "--script", script.to_str().unwrap()], dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGBUS code=5"), "the process was killed early: {stderr}");
}
