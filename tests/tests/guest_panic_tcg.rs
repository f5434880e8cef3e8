//! A guest kernel panic ends `vnvdimm run --backend tcg` with exit status 3 ("the guest
//! crashed"), not 0 like a reboot: the image loads the pvpanic driver, QEMU's pvpanic
//! device (ACPI QEMU0001, port 0x505) reports the panic, and QEMU shuts down with reason
//! guest-panic (docs/tcg-backend.md). Needs QEMU and the guest image, like scenarios_tcg.

use std::time::{Duration, Instant};

use serde_json::json;
use vnvdimm_control::ApiClient;
use vnvdimm_integration::SharedBuf;

#[test]
fn a_kernel_panic_is_a_crash_with_exit_status_3() {
    vnvdimm_integration::require_qemu();
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("nv0.img");
    std::fs::File::create(&backing).unwrap().set_len(256 << 20).unwrap();
    let socket = dir.path().join("api.sock");
    let args: Vec<String> = vec![
        "vnvdimm".into(),
        "run".into(),
        "--backend".into(),
        "tcg".into(),
        "--nvdimm".into(),
        format!("path={},size=256M", backing.display()),
        "--api-socket".into(),
        socket.display().to_string(),
    ];
    let (console, stderr) = (SharedBuf::default(), SharedBuf::default());
    let (mut o, mut e) = (console.clone(), stderr.clone());
    let run = std::thread::spawn(move || vnvdimm::cli::run(args, &mut o, &mut e));
    let started = Instant::now();
    while !socket.exists() {
        assert!(!run.is_finished() && started.elapsed() < Duration::from_secs(60), "no API socket:\n{}", stderr.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let api = ApiClient::new(&socket).with_timeout(Duration::from_secs(300));
    let r = api.post("/exec", &json!({"command": "grep -c pvpanic /proc/modules", "timeout_secs": 60})).unwrap();
    assert!(r.is_success(), "HTTP {} {}", r.status, r.body);
    assert_eq!(r.body["status"].as_i64(), Some(0), "the pvpanic driver is not loaded: {}", r.body);
    // The agent dies with the kernel, so this exec fails; the run's exit status counts.
    let _ = api.post("/exec", &json!({"command": "echo c > /proc/sysrq-trigger", "timeout_secs": 60}));
    let code = run.join().unwrap();
    let (console, stderr) = (console.text(), stderr.text());
    assert!(console.contains("Kernel panic - not syncing: sysrq triggered crash"), "{console}");
    assert_eq!(code, 3, "a kernel panic must end the run as a crash:\n{stderr}");
    assert!(stderr.contains("kernel panic (pvpanic)"), "{stderr}");
}
