//! The control API against a running KVM VM: firmware/idle.S idles on the command port
//! while the test drives the API (ApiClient and `vnvdimm ctl`), then makes the guest
//! load addresses or read its notification words to see the effect from inside.
//! Needs /dev/kvm (every project machine has it; the KVM backend's own tests fail
//! without it rather than pass silently).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vnvdimm_control::{ApiClient, ApiServerHandle};
use vnvdimm_selftest::command_port::GuestCommands;
use vnvdimm_selftest::debug_port::Report;
use vnvdimm_selftest::firmware::{self, IDLE_CMD_EXIT, IDLE_CMD_NOTIFY, IDLE_CMD_READ};
use vnvdimm_selftest::harness::{self, RunResult};
use vnvdimm_vmm::arch::x86_64::mce::{SRAO_STATUS, SRAR_STATUS};
use vnvdimm_vmm::memory::pmem_slots::PmemSlots;
use vnvdimm_vmm::GuestOutcome;

const DIMM_SIZE: u64 = 64 << 20;

struct Guest {
    socket: PathBuf,
    client: ApiClient,
    commands: Arc<GuestCommands>,
    report: Report,
    pmem: Arc<PmemSlots>,
    spa: Vec<u64>,
    backing: Vec<PathBuf>,
    vcpu: Option<JoinHandle<RunResult>>,
    _api: ApiServerHandle,
    _dir: tempfile::TempDir,
}

fn start() -> Guest {
    let dir = tempfile::tempdir().unwrap();
    let machine = harness::sparse_machine(dir.path(), 2, DIMM_SIZE).unwrap();
    let spa = machine.memory_map.layout.dimms.iter().map(|d| d.spa_base).collect();
    let backing = machine.platform.dimms.iter().map(|d| d.path.clone()).collect();
    let mut vm = harness::boot(machine, firmware::IDLE, Box::new(std::io::sink())).unwrap();
    let commands = vm.commands.clone();
    let socket = dir.path().join("api.sock");
    let api = harness::serve_api(&vm, &socket).unwrap();
    let (report, pmem) = (vm.report.clone(), vm.pmem().clone());
    let vcpu = std::thread::spawn(move || harness::run(&mut vm).unwrap());
    let client = ApiClient::new(&socket);
    let guest = Guest { socket, client, commands, report, pmem, spa, backing, vcpu: Some(vcpu), _api: api, _dir: dir };
    // The guest is idling once it answers a command.
    guest.notify_words();
    guest
}

impl Guest {
    fn get(&self, path: &str) -> Value {
        let r = self.client.get(path).unwrap();
        assert!(r.is_success(), "GET {path}: {} {:?}", r.status, r.error_message());
        r.body
    }

    /// Sends a command and returns its record (5 words), plus every machine-check
    /// record the guest reported meanwhile.
    fn command(&self, command: u32, arg: u64, tag: u32) -> ([u32; 5], Vec<[u32; 5]>) {
        let from = self.report.lock().unwrap().len();
        self.commands.send(command, arg);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let records = records(&self.report.lock().unwrap()[from..]);
            if let Some(r) = records.iter().find(|r| r[0] == tag) {
                let mcs = records.iter().filter(|r| r[0] == firmware::IDLE_TAG_MACHINE_CHECK).copied().collect();
                return (*r, mcs);
            }
            assert!(Instant::now() < deadline, "the guest did not answer command {command}: {records:x?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn read(&self, gpa: u64) -> (u64, Vec<[u32; 5]>) {
        let (r, mcs) = self.command(IDLE_CMD_READ, gpa, firmware::IDLE_TAG_READ);
        assert_eq!(word64(&r, 1), gpa);
        (word64(&r, 3), mcs)
    }

    /// Raises since the last call of (root 0x81, DIMM 0 health, DIMM 1 health), counted
    /// by the guest the way NEVT does (raised - seen, then seen = raised).
    fn notify_words(&self) -> (u32, u32, u32) {
        let (r, _) = self.command(IDLE_CMD_NOTIFY, 0, firmware::IDLE_TAG_NOTIFY);
        (r[1], r[2], r[3])
    }

    /// Machine-check records the guest reported so far.
    fn machine_checks(&self) -> Vec<[u32; 5]> {
        records(&self.report.lock().unwrap())
            .into_iter()
            .filter(|r| r[0] == firmware::IDLE_TAG_MACHINE_CHECK)
            .collect()
    }

    fn events(&self, kind: &str) -> Vec<Value> {
        let events = self.get("/events");
        events["events"].as_array().unwrap().iter().filter(|e| e["type"] == kind).cloned().collect()
    }

    fn join(&mut self) -> RunResult {
        self.vcpu.take().unwrap().join().unwrap()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(vcpu) = self.vcpu.take() {
            self.commands.send(IDLE_CMD_EXIT, 0);
            let _ = vcpu.join();
        }
    }
}

/// Splits the report into idle.S's five-word records.
fn records(words: &[u32]) -> Vec<[u32; 5]> {
    words.chunks_exact(5).map(|c| [c[0], c[1], c[2], c[3], c[4]]).collect()
}

fn word64(r: &[u32; 5], i: usize) -> u64 {
    u64::from(r[i]) | (u64::from(r[i + 1]) << 32)
}

fn ctl(socket: &std::path::Path, args: &[&str]) -> (u8, Value, String) {
    let mut argv = vec!["vnvdimm".to_string(), "ctl".into(), "--api-socket".into(), socket.display().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = vnvdimm::cli::run(argv, &mut out, &mut err);
    let out = String::from_utf8(out).unwrap();
    (code, serde_json::from_str(&out).unwrap_or(Value::Null), String::from_utf8(err).unwrap())
}

#[test]
fn vm_info_dimms_and_power_off_end_the_run() {
    let mut g = start();
    let vm = g.get("/vm");
    assert_eq!(vm["backend"], "kvm");
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["capabilities"]["action_required_machine_check"], true);
    assert_eq!(vm["memory_bytes"], 64u64 << 20);
    let dimms = g.get("/dimms");
    let dimms = dimms["dimms"].as_array().unwrap();
    assert_eq!(dimms.len(), 2);
    assert_eq!(dimms[1]["spa_base"], g.spa[1]);
    let (code, info, err) = ctl(&g.socket, &["info"]);
    assert_eq!((code, info["backend"].as_str()), (0, Some("kvm")), "{err}");

    let (code, _, err) = ctl(&g.socket, &["power-off"]);
    assert_eq!(code, 0, "{err}");
    let run = g.join();
    assert_eq!(run.outcome, GuestOutcome::PowerOff);
    assert_eq!(run.outcome.exit_status(), 0, "the documented status of an API power-off");
    assert_eq!(g.events("power_off").len(), 1);
    assert_eq!(g.get("/vm")["state"], "stopped");

    // Backend-specific refusals once the guest has stopped.
    let (code, _, err) = ctl(&g.socket, &["power-off"]);
    assert_eq!(code, 1, "refused: {err}");
    assert!(err.contains("409") || err.contains("stopped"), "{err}");
    let mc = json!({"dimm": 0, "offset": 0x1000, "length": 8, "machine_check": "action_optional"});
    let r = g.client.post("/poison", &mc).unwrap();
    assert_eq!(r.status, 409, "{:?}", r.error_message());
    assert!(r.error_message().unwrap_or("").contains("stopped"), "{:?}", r.error_message());
    assert!(g.events("machine_check").is_empty(), "nothing was delivered after the stop");
}

#[test]
fn notify_and_health_set_the_guests_notification_words() {
    let g = start();
    assert_eq!(g.notify_words(), (0, 0, 0));
    let r = g.client.post("/poison", &json!({"dimm": 0, "offset": 0x5000, "length": 4096, "notify": true})).unwrap();
    assert!(r.is_success(), "{:?}", r.error_message());
    let notes = g.events("notify");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["code"], 0x81);
    assert_eq!(g.notify_words(), (1, 0, 0), "one root 0x81 raise, as \\_SB.NVDR.NEVT counts it");

    let (code, _, err) = ctl(&g.socket, &["health", "set", "1", "--state", "critical"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(g.notify_words(), (0, 0, 1), "one raise of DIMM 1's health counter");
    assert_eq!(g.events("notify").len(), 2);
}

#[test]
fn a_guest_load_of_api_poison_is_an_srar_and_clearing_maps_the_page_again() {
    let g = start();
    let offset = 0x7000u64;
    let gpa = g.spa[0] + offset + 8;
    // Windows get their slots on first touch (lazy registration): touch both DIMMs.
    assert_eq!(g.pmem.slot_count(), 0, "no window slot before the guest touches one");
    for &spa in &g.spa {
        assert_eq!(g.read(spa), (0, vec![]), "a sparse file reads zeros");
    }
    assert_eq!(g.pmem.slot_count(), 2, "one slot per DIMM before any poison");
    let started = Instant::now();
    let (code, _, err) = ctl(&g.socket, &["poison", "add", "--dimm", "0", "--offset", "0x7000", "--length", "4K"]);
    let round_trip = started.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(g.pmem.is_hole(gpa), "the page is out of the memslots when the API answers");
    assert_eq!(g.pmem.slot_count(), 3);
    eprintln!(
        "POST /poison (vnvdimm ctl) round trip {round_trip:?}; memslot re-plan {:?}",
        g.pmem.last_sync().unwrap().took
    );

    let (value, mcs) = g.read(gpa);
    assert_eq!(value, u64::MAX, "a poisoned load reads all ones");
    assert_eq!(mcs.len(), 1, "{mcs:x?}");
    assert_eq!((word64(&mcs[0], 1), word64(&mcs[0], 3)), (gpa, SRAR_STATUS), "MC9_ADDR/STATUS in the guest");
    let logged = g.events("machine_check");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!((logged[0]["gpa"].as_u64(), &logged[0]["kind"]), (Some(gpa), &json!("action_required")));
    assert_eq!(logged[0]["delivered"], true);

    // The data the guest will see once the page is mapped again.
    let file = std::fs::OpenOptions::new().write(true).open(&g.backing[0]).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &0x5eed_u64.to_le_bytes(), offset + 8).unwrap();
    let (code, _, err) = ctl(&g.socket, &["poison", "clear", "--dimm", "0", "--offset", "0x7000", "--length", "4K"]);
    assert_eq!(code, 0, "{err}");
    assert!(!g.pmem.is_hole(gpa));
    assert_eq!(g.pmem.slot_count(), 2, "the window is one slot again");
    let (value, mcs) = g.read(gpa);
    assert_eq!(value, 0x5eed, "RAM again: the backing file's bytes");
    assert!(mcs.is_empty(), "{mcs:x?}");
    assert_eq!(g.events("machine_check").len(), 1, "no new machine check");
}

#[test]
fn action_optional_poison_reaches_the_guests_handler() {
    let g = start();
    let gpa = g.spa[1] + 0x2000;
    let body = json!({"spa": gpa, "length": 8, "machine_check": "action_optional"});
    let r = g.client.post("/poison", &body).unwrap();
    assert!(r.is_success(), "{:?}", r.error_message());
    let logged = g.events("machine_check");
    assert_eq!(logged.len(), 1, "logged before the API answered: {logged:?}");
    assert_eq!((logged[0]["gpa"].as_u64(), &logged[0]["kind"]), (Some(gpa), &json!("action_optional")));
    assert_eq!(logged[0]["delivered"], true);
    // The guest's handler ran (it reports from inside #MC and returns to the idle loop).
    let deadline = Instant::now() + Duration::from_secs(10);
    while g.machine_checks().is_empty() {
        assert!(Instant::now() < deadline, "no #MC in the guest");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mc = g.machine_checks()[0];
    assert_eq!((word64(&mc, 1), word64(&mc, 3)), (gpa, SRAO_STATUS));
    assert_eq!(g.notify_words(), (0, 0, 0), "the guest still runs; no notification was asked for");
}
