//! The control API on an interleaved platform (the default two DIMMs as one 2-way set,
//! 4 KiB lines): `dimm`+`offset` and `spa` addressing follow the interleave, a `spa`
//! range across a line boundary is split over the members, and a DIMM's summary names
//! its set (docs/interleave-sets.md).

use std::path::Path;
use std::sync::Arc;

use nvdimm_model::{NvdimmPlatform, PlatformConfig, PlatformLayout};
use serde_json::{json, Value};
use vnvdimm_control::fake::{Call, FakeBackend};
use vnvdimm_control::types::{DimmSummary, PoisonList};
use vnvdimm_control::{ApiClient, ApiServer};

const BASE: u64 = 4 << 30;
const LINE: u64 = 4096;

struct Vm {
    backend: Arc<FakeBackend>,
    client: ApiClient,
    _server: vnvdimm_control::ApiServerHandle,
    _dir: tempfile::TempDir,
}

fn start() -> Vm {
    let config = PlatformConfig::default_in(Path::new("/nonexistent"))
        .with_interleave_sets(&["dimms=0,1,line=4K".to_string()])
        .unwrap();
    let layout = PlatformLayout::packed(&config, BASE, 1 << 30, 0xC010_0000, 0xD0000, 0xC000_0000);
    let backend = Arc::new(FakeBackend::new(NvdimmPlatform::ephemeral(config, layout).unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let server = ApiServer::start(&socket, backend.clone()).unwrap();
    Vm { backend, client: ApiClient::new(&socket), _server: server, _dir: dir }
}

impl Vm {
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.client.request(method, path, body.as_ref()).unwrap();
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.body
    }
}

#[test]
fn summaries_name_the_set_and_the_first_line() {
    let vm = start();
    let dimms: Vec<DimmSummary> = serde_json::from_value(vm.ok("GET", "/dimms", None)["dimms"].clone()).unwrap();
    assert_eq!((dimms[0].spa_base, dimms[1].spa_base), (BASE, BASE + LINE));
    assert_eq!((dimms[0].interleave_set, dimms[1].interleave_set), (Some(0), Some(0)));
}

#[test]
fn dimm_offset_poison_is_at_its_lines_address() {
    let vm = start();
    let added = vm.ok("POST", "/poison", Some(json!({"dimm": 1, "offset": LINE + 8, "length": 512})));
    // DIMM 1's second line is the set's line 3.
    assert_eq!(added["spa"].as_u64(), Some(BASE + 3 * LINE + 8));
    assert_eq!(added["spread"], json!([]), "one DIMM range: {added}");
    let list: PoisonList = serde_json::from_value(vm.ok("GET", "/dimms/1/poison", None)).unwrap();
    assert_eq!((list.ranges[0].offset, list.ranges[0].spa), (LINE + 8, BASE + 3 * LINE + 8));
}

#[test]
fn a_spa_range_across_a_line_boundary_is_split_over_the_members() {
    let vm = start();
    let added = vm.ok("POST", "/poison", Some(json!({"spa": BASE + 2 * LINE - 256, "length": 512})));
    // Line 1 (DIMM 1's first line) then line 2 (DIMM 0's second).
    assert_eq!((added["dimm"].as_u64(), added["offset"].as_u64()), (Some(1), Some(LINE - 256)));
    assert_eq!(
        added["spread"],
        json!([
            {"dimm": 1, "offset": LINE - 256, "length": 256, "spa": BASE + 2 * LINE - 256},
            {"dimm": 0, "offset": LINE, "length": 256, "spa": BASE + 2 * LINE}
        ])
    );
    assert_eq!(vm.backend.calls(), vec![Call::PoisonChanged(1), Call::PoisonChanged(0)]);
    let cleared = vm.ok("DELETE", "/poison", Some(json!({"spa": BASE + 2 * LINE - 256, "length": 512})));
    assert_eq!(cleared["cleared_bytes"].as_u64(), Some(512));
    for d in 0..2 {
        assert_eq!(vm.ok("GET", &format!("/dimms/{d}/poison"), None)["total_bytes"], 0);
    }
}

#[test]
fn a_range_past_the_sets_end_names_the_set() {
    let vm = start();
    let r = vm.client.request("POST", "/poison", Some(&json!({"spa": BASE + (2 << 30) - 256, "length": 512}))).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let message = r.error_message().unwrap().to_string();
    assert!(message.contains("interleave set #0"), "{message}");
}
