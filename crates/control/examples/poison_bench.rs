//! Adds 100,000 poison ranges to a DIMM with persistent state through the control API
//! (a real server on a Unix socket, the real client), as `POST /poison` batches and as
//! single requests, then reopens the DIMM as after a crash and checks every acknowledged
//! range is there. Issue 10, point 9: before the poison journal every add rewrote and
//! fsynced the whole state file (7.5 ms per add at 29k ranges; 100k would take ~20 min).
//!
//! `cargo run --release -p vnvdimm-control --features fake --example poison_bench [DIR]`
//! (DIR: where the backing files and sidecars go; default a temp dir under /tmp, which
//! may be tmpfs: give a directory on a disk to include real fdatasync costs).

use std::sync::Arc;
use std::time::Instant;

use nvdimm_model::clock::SystemClock;
use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};
use serde_json::json;
use vnvdimm_control::fake::FakeBackend;
use vnvdimm_control::{ApiClient, ApiServer};

const BATCHED: u64 = 100_000;
const BATCH: u64 = 1_000;
const SINGLE: u64 = 5_000;
/// Separate ranges: 512 bytes every 4 KiB, so none merge.
const STRIDE: u64 = 4096;

fn open(dir: &std::path::Path) -> NvdimmPlatform {
    let config = PlatformConfig::default_in(dir);
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::open(config, layout, Arc::new(SystemClock::new())).expect("open the platform")
}

fn main() {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).expect("temp dir");
    let config = PlatformConfig::default_in(dir.path());
    for d in &config.dimms {
        std::fs::File::create(&d.path).and_then(|f| f.set_len(d.size)).expect("backing file");
    }
    let socket = dir.path().join("api.sock");
    let backend = Arc::new(FakeBackend::new(open(dir.path())));
    let server = ApiServer::start(&socket, backend.clone()).expect("server");
    let client = ApiClient::new(&socket);

    let started = Instant::now();
    for batch in 0..BATCHED / BATCH {
        let ranges: Vec<_> =
            (0..BATCH).map(|i| json!({"dimm": 0, "offset": (batch * BATCH + i) * STRIDE, "length": 512})).collect();
        let r = client.post("/poison", &json!({ "ranges": ranges })).expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let batched = started.elapsed();
    println!(
        "{BATCHED} ranges in batches of {BATCH}: {:.2} s ({:.1} µs per range)",
        batched.as_secs_f64(),
        batched.as_secs_f64() * 1e6 / BATCHED as f64
    );

    let mut per_thousand = Vec::new();
    let mut lap = Instant::now();
    for i in 0..SINGLE {
        let body = json!({"dimm": 1, "offset": i * STRIDE, "length": 512});
        let r = client.post("/poison", &body).expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
        if (i + 1) % 1000 == 0 {
            per_thousand.push(lap.elapsed().as_secs_f64() * 1e3 / 1000.0);
            lap = Instant::now();
        }
    }
    let laps: Vec<String> = per_thousand.iter().map(|ms| format!("{ms:.2}")).collect();
    println!("{SINGLE} single POST /poison: ms per add for each 1000: {}", laps.join(", "));

    let count = |i: usize| client.get(&format!("/dimms/{i}")).expect("request").body["poison_ranges"].clone();
    println!("API reports {} + {} ranges", count(0), count(1));
    // A crash: the server and the platform go without a clean close.
    drop(server);
    drop(backend);
    let reopened = Instant::now();
    let p = open(dir.path());
    let (a, b) = (p.poison_ranges(0).unwrap().len(), p.poison_ranges(1).unwrap().len());
    println!("reopened after a crash in {:.0} ms: {a} + {b} ranges", reopened.elapsed().as_secs_f64() * 1e3);
    assert_eq!((a as u64, b as u64), (BATCHED, SINGLE), "acknowledged ranges were lost");
}
