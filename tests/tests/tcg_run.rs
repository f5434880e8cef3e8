//! `vnvdimm run --backend tcg` end to end, through the same code path as the command
//! (`vnvdimm::cli::run`): Debian's kernel under QEMU TCG on file-backed DIMMs.
//!
//! - boot 1 writes labels and one raw namespace per region, stores a marker through
//!   each `/dev/pmemX`, and meanwhile the test asks the control API for `GET /vm` and
//!   `POST /poison` (with `notify`); the guest must see the poison as a bad block,
//!   which only happens if the notification reached `\_SB.NVDR.NEVT`;
//! - after power-off the markers are in the user's backing files at the right offsets;
//! - boot 2 lists the namespaces of boot 1 and reads the markers back;
//! - bad options are refused (exit 2, message naming the option) before anything starts.
//!
//! Needs qemu-system-x86_64 and the guest image (images/build-guest.sh); their absence
//! is a failure. Work files stay in the printed directory with VNV_KEEP_WORK=1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nvdimm_model::config::MIB;
use serde_json::{json, Value};
use vnvdimm_control::ApiClient;
use vnvdimm_tcg::cpio::{self, CpioFile};
use vnvdimm_tcg::results::StepResults;
use vnvdimm_tcg::{GuestImage, Script, TcgLayout};

const DIMM_SIZE: u64 = 256 * MIB;
const MEMORY: &str = "512M";
/// Where each namespace gets its marker (raw namespaces start at DIMM offset 0).
const MARK_OFFSET: u64 = MIB;
/// Host poison added at run time: DIMM 1, 64 MiB in, one page.
const POISON_OFFSET: u64 = 64 * MIB;

use vnvdimm_integration::SharedBuf;

struct Setup {
    dir: PathBuf,
    image: GuestImage,
    dimms: Vec<PathBuf>,
}

fn setup() -> Setup {
    vnvdimm_integration::require_qemu();
    let image = GuestImage::locate_or_build().unwrap_or_else(|e| panic!("guest image: {e}"));
    let dir = tempfile::Builder::new().prefix("vnv-tcg-run-").tempdir().unwrap().keep();
    println!("work dir: {}", dir.display());
    let dimms: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("nvdimm{i}.img"))).collect();
    for d in &dimms {
        std::fs::File::create(d).unwrap().set_len(DIMM_SIZE).unwrap();
    }
    Setup { dir, image, dimms }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if std::env::var_os("VNV_KEEP_WORK").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn nvdimm_args(dimms: &[PathBuf]) -> Vec<String> {
    dimms
        .iter()
        .flat_map(|d| ["--nvdimm".to_string(), format!("path={},size=256M,label-size=128K", d.display())])
        .collect()
}

/// The image's initramfs plus `/test.sh` (the init sources it; see images/init).
fn initrd_with(setup: &Setup, name: &str, script: &Script) -> PathBuf {
    let mut bytes = std::fs::read(&setup.image.initramfs).unwrap();
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    let sh = script.to_shell();
    bytes.extend(cpio::archive(&[CpioFile { name: "test.sh", mode: 0o755, data: sh.as_bytes() }]));
    let path = setup.dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run_args(setup: &Setup, initrd: &Path, api: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = ["vnvdimm", "run", "--backend", "tcg", "--memory", MEMORY, "--cpus", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--kernel".into(), setup.image.vmlinux.display().to_string()]);
    a.extend(["--initramfs".into(), initrd.display().to_string()]);
    a.extend(["--cmdline".into(), "console=ttyS0 panic=-1 quiet rdinit=/init".into()]);
    a.extend(nvdimm_args(&setup.dimms));
    if let Some(sock) = api {
        a.extend(["--api-socket".into(), sock.display().to_string()]);
    }
    a
}

/// Runs `vnvdimm` on a thread; returns its console buffer and the join handle.
fn spawn(args: Vec<String>) -> (SharedBuf, SharedBuf, std::thread::JoinHandle<u8>) {
    let (out, err) = (SharedBuf::default(), SharedBuf::default());
    let (mut o, mut e) = (out.clone(), err.clone());
    let handle = std::thread::spawn(move || vnvdimm::cli::run(args, &mut o, &mut e));
    (out, err, handle)
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn windows() -> Vec<std::ops::Range<u64>> {
    let dimms: Vec<String> = (0..2).map(|i| format!("path=/nonexistent/{i},size=256M,label-size=128K")).collect();
    let config = nvdimm_model::PlatformConfig::parse(&dimms, "cpu-cache").unwrap();
    let opts = vnvdimm::run_tcg::layout_options(nvdimm_model::config::parse_size(MEMORY).unwrap()).unwrap();
    TcgLayout::new(&config, opts).unwrap().windows
}

#[test]
fn run_tcg_two_boots_backing_files_and_api() {
    let setup = setup();
    let windows = windows();

    // Boot 1.
    let mut s1 = Script::new();
    s1.step("labels", "ndctl disable-region all && ndctl init-labels all && ndctl enable-region all");
    s1.step(
        "namespaces",
        "for r in /sys/bus/nd/devices/region*; do n=${r##*/}; res=$(cat $r/resource); \
         dev=$(ndctl create-namespace -r $n -m raw | sed -n 's/.*\"blockdev\":\"\\([^\"]*\\)\".*/\\1/p'); \
         echo \"$n $res $dev\"; printf 'VNVMARK %s\\n' $res | dd of=/dev/$dev bs=4096 seek=256 conv=sync,fsync 2>/dev/null || exit 1; done",
    );
    s1.step(
        "wait_badblocks",
        "i=0; while [ $i -lt 300 ]; do cat /sys/bus/nd/devices/region*/badblocks | grep -q . && break; sleep 0.1; i=$((i+1)); done; \
         for r in /sys/bus/nd/devices/region*; do echo \"$(cat $r/resource) $(cat $r/badblocks)\"; done",
    );
    let initrd1 = initrd_with(&setup, "initrd1.img", &s1);
    let sock = setup.dir.join("api.sock");
    let started = Instant::now();
    let (out, err, handle) = spawn(run_args(&setup, &initrd1, Some(&sock)));

    // The API answers while the guest runs.
    wait_for("the API socket", Duration::from_secs(30), || sock.exists());
    let api = ApiClient::new(&sock);
    let vm = api.get("/vm").unwrap();
    assert!(vm.is_success(), "GET /vm: {vm:?}");
    let vm: Value = vm.body.clone();
    assert_eq!(vm["backend"], "tcg", "{vm}");
    assert_eq!(vm["state"], "running", "{vm}");
    assert_eq!(vm["capabilities"]["action_optional_machine_check"], true, "{vm}");
    assert_eq!(vm["capabilities"]["action_required_machine_check"], false, "{vm}");

    // Poison only once the guest waits for it, so only the notification can tell it.
    wait_for("the guest's wait_badblocks step", Duration::from_secs(120), || {
        out.text().contains("@@VNV-BEGIN wait_badblocks@@")
    });
    let poison = api
        .post(
            "/poison",
            &json!({ "dimm": 1, "offset": POISON_OFFSET, "length": 4096, "notify": true }),
        )
        .unwrap();
    assert!(poison.is_success(), "POST /poison: {poison:?}");
    let code = handle.join().unwrap();
    let boot1 = started.elapsed();
    let console = out.text();
    assert_eq!(code, 0, "exit status; stderr: {}\nconsole:\n{console}", err.text());
    assert!(err.text().contains("guest powered off (QEMU ended: exit status: 0)"), "{}", err.text());
    let r1 = StepResults::parse(&console);
    for step in ["labels", "namespaces", "wait_badblocks"] {
        let s = r1.get(step).unwrap_or_else(|| panic!("no step {step} in:\n{console}"));
        assert!(s.ok(), "step {step} failed: {}", s.output);
    }
    // The poison, relative to DIMM 1's region, as sector offset and count.
    let bad = &r1.get("wait_badblocks").unwrap().output;
    let want = format!("{:#x} {} 8", windows[1].start, POISON_OFFSET / 512);
    assert!(bad.lines().any(|l| l.trim() == want), "expected {want:?} in badblocks:\n{bad}");
    assert!(!sock.exists(), "the API socket must be removed when the VM ends");

    // The markers are in the user's backing files, each DIMM's in its own file.
    for (i, w) in windows.iter().enumerate() {
        let data = std::fs::read(&setup.dimms[i]).unwrap();
        let at = &data[MARK_OFFSET as usize..MARK_OFFSET as usize + 32];
        let want = format!("VNVMARK {:#x}\n", w.start);
        assert!(
            at.starts_with(want.as_bytes()),
            "DIMM {i}'s backing file at {MARK_OFFSET:#x}: {:?}, expected {want:?}",
            String::from_utf8_lossy(at)
        );
    }
    let state: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.state.json", setup.dimms[0].display())).unwrap_or_default())
            .unwrap_or(Value::Null);
    println!("DIMM 0 state after boot 1: {state}");

    // Boot 2: the namespaces of boot 1 come back from the labels, with their data.
    let mut s2 = Script::new();
    s2.step("list", "ndctl list -N");
    s2.step(
        "read",
        "for b in /dev/pmem*; do dd if=$b bs=4096 skip=256 count=1 2>/dev/null | head -n 1; done",
    );
    let initrd2 = initrd_with(&setup, "initrd2.img", &s2);
    let started2 = Instant::now();
    let (out2, err2, handle2) = spawn(run_args(&setup, &initrd2, None));
    let code2 = handle2.join().unwrap();
    let boot2 = started2.elapsed();
    let console2 = out2.text();
    assert_eq!(code2, 0, "stderr: {}\nconsole:\n{console2}", err2.text());
    let r2 = StepResults::parse(&console2);
    let list = r2.get("list").unwrap_or_else(|| panic!("no list step in:\n{console2}"));
    let json_start = list.output.find('[').unwrap_or_else(|| panic!("no JSON in {:?}", list.output));
    let json_end = list.output.rfind(']').unwrap() + 1;
    let namespaces: Value = serde_json::from_str(&list.output[json_start..json_end])
        .unwrap_or_else(|e| panic!("ndctl list -N: {e}: {}", list.output));
    let namespaces = namespaces.as_array().unwrap();
    assert_eq!(namespaces.len(), 2, "{namespaces:?}");
    for ns in namespaces {
        assert_eq!(ns["mode"], "raw", "{ns}");
        assert!(ns.get("uuid").is_some(), "a label-backed namespace has a uuid: {ns}");
    }
    let read = &r2.get("read").unwrap().output;
    for w in &windows {
        let want = format!("VNVMARK {:#x}", w.start);
        assert!(read.lines().any(|l| l.trim() == want), "{want:?} not read back in boot 2:\n{read}");
    }
    println!("boot 1 (labels, namespaces, API, notification): {boot1:?}; boot 2: {boot2:?}");
}

#[test]
fn bad_options_are_refused_before_qemu_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = dir.path().join("d0");
    std::fs::File::create(&d0).unwrap().set_len(DIMM_SIZE).unwrap();
    let big = dir.path().join("big");
    // Beyond what TCG's 40 physical address bits leave above 4 GiB (docs/tcg-backend.md).
    std::fs::File::create(&big).unwrap().set_len(1020 * 1024 * MIB).unwrap();
    let not_socket = dir.path().join("plain-file");
    std::fs::write(&not_socket, b"x").unwrap();
    let nv = |p: &Path, size: &str| format!("path={},size={size}", p.display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--nvdimm".into(), nv(&dir.path().join("missing"), "256M")], "--nvdimm #0"),
        (vec!["--nvdimm".into(), nv(&d0, "256M"), "--memory".into(), "64M".into()], "--memory"),
        (vec!["--nvdimm".into(), nv(&big, "1020G")], "--memory/--nvdimm (--backend tcg)"),
        // More RAM than QEMU's pc machine maps below 4 GiB once the DIMMs follow above.
        (vec!["--nvdimm".into(), nv(&d0, "256M"), "--memory".into(), "3G".into()], "--memory/--nvdimm (--backend tcg)"),
        (
            vec!["--nvdimm".into(), nv(&d0, "256M"), "--api-socket".into(), not_socket.display().to_string()],
            "--api-socket",
        ),
        (vec!["--nvdimm".into(), format!("{},colour=red", nv(&d0, "256M"))], "--nvdimm"),
    ];
    for (extra, option) in cases {
        let mut args: Vec<String> = vec!["vnvdimm".into(), "run".into(), "--backend".into(), "tcg".into()];
        args.extend(extra);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = vnvdimm::cli::run(args.clone(), &mut out, &mut err);
        let err = String::from_utf8_lossy(&err);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(&format!("error: {option}")), "{args:?} should name {option}: {err}");
    }
    // Nothing was opened: the device model writes a state sidecar when it opens a DIMM.
    assert!(!dir.path().join("d0.state.json").exists());
    assert!(!dir.path().join("big.state.json").exists());
}
