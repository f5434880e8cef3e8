//! docs/api.yaml agrees with the server: every path and method in the yaml is routed
//! and every route is in the yaml; the schemas list exactly the fields the server sends
//! and accepts; every `$ref` resolves. The yaml is read with a small indentation-based
//! reader (the file keeps to two-space block style), so no YAML library is needed.

mod api_support;

use std::collections::BTreeSet;

use api_support::{start, DIMM0_SPA};
use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::events::{DsmCallRecord, Notification, NotifyTarget};
use nvdimm_model::health::{HealthState, Temperature};
use serde_json::{json, Value};
use vnvdimm_control::routes::ROUTES;
use vnvdimm_control::types::*;

struct Yaml {
    lines: Vec<(usize, String)>,
}

impl Yaml {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l.len() - l.trim_start().len(), l.trim().to_string()))
            .collect();
        Yaml { lines }
    }

    /// Line index of the key `path` (e.g. ["components", "schemas", "Error"]).
    fn find(&self, path: &[&str]) -> Option<usize> {
        let (mut at, mut indent) = (None, 0);
        for key in path {
            let start = at.map_or(0, |i| i + 1);
            let found = self.keys_from(start, indent).into_iter().find(|(k, _)| k == key)?;
            at = Some(found.1);
            indent += 2;
        }
        at
    }

    /// Keys at `indent` from line `start` until the block ends.
    fn keys_from(&self, start: usize, indent: usize) -> Vec<(String, usize)> {
        let mut keys = Vec::new();
        for (i, (ind, text)) in self.lines.iter().enumerate().skip(start) {
            if *ind < indent {
                break;
            }
            if *ind == indent && !text.starts_with('-') {
                if let Some(key) = text.split(':').next() {
                    keys.push((key.trim_matches('"').to_string(), i));
                }
            }
        }
        keys
    }

    /// The keys directly under `path`.
    fn children(&self, path: &[&str]) -> BTreeSet<String> {
        let at = self.find(path).unwrap_or_else(|| panic!("docs/api.yaml has no {path:?}"));
        self.keys_from(at + 1, path.len() * 2).into_iter().map(|(k, _)| k).collect()
    }

    fn properties(&self, schema: &str) -> BTreeSet<String> {
        self.children(&["components", "schemas", schema, "properties"])
    }
}

macro_rules! keys {
    ($value:expr) => {
        object_keys(serde_json::to_value(&$value).unwrap())
    };
}

fn object_keys(value: Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn every_yaml_path_is_routed_and_every_route_documented() {
    let yaml = Yaml::load();
    let mut documented = BTreeSet::new();
    for path in yaml.children(&["paths"]) {
        for method in yaml.children(&["paths", &path]) {
            if method != "parameters" {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<_> = ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(documented, routed);
    let servers = yaml.find(&["servers"]).unwrap();
    assert_eq!(yaml.lines[servers + 1].1, format!("- url: {API_PREFIX}"));
}

#[test]
fn every_ref_resolves() {
    let yaml = Yaml::load();
    let mut count = 0;
    for (_, text) in &yaml.lines {
        let Some(target) = text.strip_prefix("$ref: '#/").or_else(|| text.strip_prefix("- $ref: '#/")) else {
            continue;
        };
        let target: Vec<&str> = target.trim_end_matches('\'').split('/').collect();
        assert!(yaml.find(&target).is_some(), "dangling $ref {target:?}");
        count += 1;
    }
    assert!(count > 20, "only {count} $refs found: the reader is broken");
}

#[test]
fn response_schemas_list_what_the_server_sends() {
    let yaml = Yaml::load();
    let vm = start();
    let check = |schema: &str, value: &Value| {
        let sent: BTreeSet<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(yaml.properties(schema), sent, "schema {schema} vs {value}");
    };
    check("VmResponse", &vm.get("/vm").body);
    check("Capabilities", &vm.get("/vm").body["capabilities"]);
    check("DimmsResponse", &vm.get("/dimms").body);
    let dimm = vm.get("/dimms/0").body;
    check("DimmSummary", &dimm);
    check("HealthSummary", &dimm["health"]);
    check("Alarms", &dimm["health"]["alarm_trips"]);
    let added = vm.ok("POST", "/poison", Some(json!({"dimm": 0, "offset": 0, "length": 4096})));
    check("PoisonAdded", &added);
    let batch = vm.ok("POST", "/poison", Some(json!({"ranges": [{"dimm": 1, "offset": 0, "length": 512}]})));
    check("PoisonBatchAdded", &batch);
    check("AddedRange", &batch["ranges"][0]);
    let list = vm.get("/dimms/0/poison").body;
    check("PoisonList", &list);
    check("PoisonRange", &list["ranges"][0]);
    check("PoisonCleared", &vm.ok("DELETE", "/poison", Some(json!({"spa": DIMM0_SPA, "length": 1}))));
    let health = vm.ok("PUT", "/dimms/0/health", Some(json!({"state": "critical"})));
    check("HealthResponse", &health);
    check("SmartHealth", &health["smart"]);
    check("SmartThresholds", &health["thresholds"]);
    check("SmartInjection", &health["injection"]);
    check("SecurityResponse", &vm.get("/dimms/0/security").body);
    check("FirmwareResponse", &vm.get("/dimms/0/firmware").body);
    check("ArsResponse", &vm.get("/ars").body);
    let events = vm.get("/events").body;
    check("EventsResponse", &events);
    for event in events["events"].as_array().unwrap() {
        for required in ["seq", "time_ms", "type"] {
            assert!(event.get(required).is_some(), "{event}");
        }
    }
    check("ExecOutput", &vm.ok("POST", "/exec", Some(json!({"command": "true"}))));
    check("Error", &vm.get("/nothing").body);
    check("PowerOffResponse", &vm.ok("PUT", "/vm/power-off", None));
}

#[test]
fn request_schemas_list_what_the_server_accepts() {
    let yaml = Yaml::load();
    let some_bytes = Some(Bytes(1));
    let alarms = AlarmsUpdate { spares: Some(true), media_temperature: Some(true), controller_temperature: Some(true) };
    let t = Some(Temperature::from_celsius(1).unwrap());
    let thresholds = ThresholdsUpdate {
        alarm_control: Some(alarms),
        spares_percent: Some(1),
        media_temperature: t,
        controller_temperature: t,
    };
    let poison =
        PoisonRequest { dimm: Some(0), offset: some_bytes, spa: some_bytes, length: Bytes(1), ..Default::default() };
    assert_eq!(yaml.properties("PoisonRequest"), keys!(poison));
    let clear = ClearPoisonRequest { dimm: Some(0), offset: some_bytes, spa: some_bytes, length: Bytes(1) };
    assert_eq!(yaml.properties("ClearPoisonRequest"), keys!(clear));
    let batch = PoisonBatchRequest { ranges: vec![clear], notify: true };
    assert_eq!(yaml.properties("PoisonBatchRequest"), keys!(batch));
    assert_eq!(yaml.properties("AlarmsUpdate"), keys!(alarms));
    assert_eq!(yaml.properties("ThresholdsUpdate"), keys!(thresholds));
    let health = HealthUpdate {
        state: Some(HealthState::Ok),
        spares_percent: Some(1),
        life_used_percent: Some(1),
        alarm_trips: Some(alarms),
        media_temperature: t,
        controller_temperature: t,
        pmic_temperature: t,
        unsafe_shutdown_count: Some(1),
        last_shutdown_state: Some(1),
        ait_dram_status: Some(1),
        vendor_data: Some(vec![1]),
        valid: Some(1),
        thresholds: Some(thresholds),
    };
    assert_eq!(yaml.properties("HealthUpdate"), keys!(health));
    let shutdown = ShutdownStateUpdate { dirty_shutdown_count: Some(1), last_shutdown_state: Some(1) };
    assert_eq!(yaml.properties("ShutdownStateUpdate"), keys!(shutdown));
    assert_eq!(yaml.properties("ArsUpdate"), keys!(ArsUpdate { rate_bytes_per_sec: Bytes(1) }));
    let security = SecurityUpdate {
        passphrase: Some("p".into()),
        passphrase_hex: Some("00".into()),
        remove_passphrase: true,
        master_passphrase: Some("m".into()),
        master_enabled: Some(true),
        locked: Some(true),
        frozen: Some(true),
        reset_attempts: true,
        overwrite_time_ms: Some(1),
    };
    assert_eq!(yaml.properties("SecurityUpdate"), keys!(security));
    let firmware = FirmwareUpdate {
        fail_next: Some(nvdimm_model::firmware::FirmwareFault::Busy),
        cancel_fault: true,
        verify_time_ms: Some(1),
    };
    assert_eq!(yaml.properties("FirmwareUpdate"), keys!(firmware));
    let exec = ExecRequest { command: "true".into(), timeout_secs: Some(1) };
    assert_eq!(yaml.properties("ExecRequest"), keys!(exec));
}

#[test]
fn event_types_match_the_event_log() {
    let yaml = Yaml::load();
    let at = yaml.find(&["components", "schemas", "Event", "properties", "type"]).unwrap();
    let enum_line = &yaml.lines[at + 2].1;
    let documented: BTreeSet<String> = enum_line
        .strip_prefix("enum: [")
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("expected the enum after `type:`, got {enum_line}"))
        .split(", ")
        .map(str::to_string)
        .collect();
    let kinds = [
        EventKind::Dsm(DsmCallRecord { handle: 0, family: "root", function: 0, revision: 1, status: None }),
        EventKind::Flush { dimm: 0, handle: 1 },
        EventKind::MachineCheck { gpa: 0, kind: MachineCheckKind::ActionRequired, delivered: true },
        EventKind::Notify(Notification { target: NotifyTarget::Root, code: 0x81 }),
        EventKind::PoisonAdded { dimm: 0, offset: 0, length: 1 },
        EventKind::PoisonCleared { dimm: 0, offset: 0, length: 1 },
        EventKind::HealthChanged { dimm: 0 },
        EventKind::PowerOff { reason: String::new() },
        EventKind::MediaErased { dimm: 0, bytes: 0 },
        EventKind::MediaEraseFailed { dimm: 0, error: String::new() },
        EventKind::StateSaveFailed { dimm: 0, error: String::new() },
    ];
    // A new EventKind variant makes this match fail to compile, so the list above stays complete.
    for kind in &kinds {
        match kind {
            EventKind::Dsm(_)
            | EventKind::Flush { .. }
            | EventKind::MachineCheck { .. }
            | EventKind::Notify(_)
            | EventKind::PoisonAdded { .. }
            | EventKind::PoisonCleared { .. }
            | EventKind::HealthChanged { .. }
            | EventKind::PowerOff { .. }
            | EventKind::MediaErased { .. }
            | EventKind::MediaEraseFailed { .. }
            | EventKind::StateSaveFailed { .. } => {}
        }
    }
    let sent: BTreeSet<String> =
        kinds.iter().map(|k| serde_json::to_value(k).unwrap()["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(documented, sent);
}
