//! What each endpoint does. Every request is validated completely before anything
//! changes; the device model is changed under the platform lock, and the backend is
//! told afterwards, without the lock held (see the locking rule in `backend.rs`).

use std::sync::MutexGuard;

use nvdimm_model::dimm::Dimm;
use nvdimm_model::event_log::{EventKind, MachineCheckKind};
use nvdimm_model::health::{valid, SmartHealth, SmartThresholds};
use nvdimm_model::platform_health::HostHealthError;
use nvdimm_model::platform_poison::HostPoisonError;
use nvdimm_model::platform_security::HostSecurityError;
use nvdimm_model::poison::MAX_RANGES;
use nvdimm_model::spa_map::{SpaMap, SpaWindow};
use nvdimm_model::NvdimmPlatform;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::backend::{Backend, BackendError};
use crate::routes::Endpoint;
use crate::types::*;

/// A finished answer: HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// For 405: the methods the path has (the `Allow` header).
    pub allow: Option<String>,
}

impl Reply {
    pub fn ok(body: impl Serialize) -> Self {
        // Our response types always serialize; `Null` would only hide a bug, so say so.
        let body = serde_json::to_value(body).unwrap_or_else(|e| json!({ "error": format!("internal: {e}") }));
        Reply { status: 200, body, allow: None }
    }

    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply { status, body: json!({ "error": message.into() }), allow: None }
    }
}

type Outcome = Result<Reply, Reply>;

pub(crate) fn bad_request(message: impl Into<String>) -> Reply {
    Reply::error(400, message)
}

fn backend_failure(context: &str, e: BackendError) -> Reply {
    let status = match e {
        BackendError::Unsupported(_) => 501,
        BackendError::Conflict(_) => 409,
        BackendError::Failed(_) | BackendError::FailedWith { .. } => 500,
        // Nobody reads it (the client is gone), but a proxy in between might.
        BackendError::Cancelled(_) => 499,
    };
    Reply::error(status, format!("{context}{e}"))
}

/// The parts of a request an endpoint may use.
pub struct Request<'a> {
    pub endpoint: Endpoint,
    /// The raw `{index}` path segment.
    pub index: Option<&'a str>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Runs one request against `backend`.
pub fn handle(backend: &dyn Backend, req: &Request<'_>) -> Reply {
    match dispatch(backend, req) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn dispatch(backend: &dyn Backend, req: &Request<'_>) -> Outcome {
    use Endpoint::*;
    let takes_body =
        matches!(req.endpoint, AddPoison | ClearPoison | SetHealth | SetShutdownState | SetSecurity | SetFirmware | SetArs | Exec);
    if !takes_body && !req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request("this endpoint takes no request body"));
    }
    if req.endpoint != GetEvents && req.query.is_some_and(|q| !q.is_empty()) {
        return Err(bad_request("this endpoint takes no query parameters"));
    }
    match req.endpoint {
        GetVm => Ok(Reply::ok(vm_info(backend)?)),
        PowerOff => power_off(backend),
        ListDimms => {
            let counts = backend.flush_counts();
            let p = lock(backend)?;
            let dimms = (0..p.dimms().len()).map(|i| summary(&p, i, &counts)).collect();
            Ok(Reply::ok(DimmsResponse { dimms }))
        }
        GetDimm => {
            let counts = backend.flush_counts();
            let p = lock(backend)?;
            let i = path_index(req, &p)?;
            Ok(Reply::ok(summary(&p, i, &counts)))
        }
        ListPoison => {
            let p = lock(backend)?;
            let i = path_index(req, &p)?;
            Ok(Reply::ok(poison_list(&p, i)))
        }
        AddPoison if is_batch(req.body) => add_poison_batch(backend, parse(req.body)?),
        AddPoison => add_poison(backend, parse(req.body)?),
        ClearPoison => clear_poison(backend, parse(req.body)?),
        GetHealth => {
            let p = lock(backend)?;
            let i = path_index(req, &p)?;
            Ok(Reply::ok(health_response(&p.dimms()[i], i, None)))
        }
        SetHealth => {
            let update: HealthUpdate = parse(req.body)?;
            set_health(backend, req, |h, t| apply_health_update(&update, h, t))
        }
        SetShutdownState => {
            let update: ShutdownStateUpdate = parse(req.body)?;
            set_health(backend, req, |h, _| apply_shutdown_update(&update, h))
        }
        GetSecurity => {
            let p = lock(backend)?;
            let i = path_index(req, &p)?;
            let view = p.security_view(i).map_err(security_failure)?;
            Ok(Reply::ok(crate::security::response(i, view)))
        }
        SetSecurity => {
            let change = crate::security::change(&parse(req.body)?)?;
            let mut p = lock(backend)?;
            let i = path_index(req, &p)?;
            let view = p.set_security(i, &change).map_err(security_failure)?;
            Ok(Reply::ok(crate::security::response(i, view)))
        }
        GetFirmware => {
            let p = lock(backend)?;
            let i = path_index(req, &p)?;
            let view = p.firmware_view(i).map_err(|e| bad_request(e.to_string()))?;
            Ok(Reply::ok(crate::firmware::response(i, view)))
        }
        SetFirmware => {
            let change = crate::firmware::change(&parse(req.body)?)?;
            let mut p = lock(backend)?;
            let i = path_index(req, &p)?;
            let view = p.set_firmware(i, &change).map_err(|e| bad_request(e.to_string()))?;
            Ok(Reply::ok(crate::firmware::response(i, view)))
        }
        GetArs => Ok(Reply::ok(ars_response(&*lock(backend)?))),
        SetArs => {
            let update: ArsUpdate = parse(req.body)?;
            let mut p = lock(backend)?;
            p.set_ars_rate(update.rate_bytes_per_sec.0).map_err(|e| bad_request(format!("rate_bytes_per_sec: {e}")))?;
            Ok(Reply::ok(ars_response(&p)))
        }
        GetEvents => {
            let since = events_since(req.query.unwrap_or(""))?;
            let events = lock(backend)?.events_since(since);
            let last_seq = events.last().map_or(since, |e| e.seq);
            Ok(Reply::ok(json!({ "events": events, "last_seq": last_seq })))
        }
        Exec => exec(backend, parse(req.body)?),
    }
}

fn exec(backend: &dyn Backend, req: ExecRequest) -> Outcome {
    if req.command.trim().is_empty() {
        return Err(bad_request("command: empty; give the shell command to run in the guest"));
    }
    let secs = req.timeout_secs.unwrap_or(EXEC_DEFAULT_TIMEOUT_SECS);
    if !(1..=EXEC_MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(bad_request(format!("timeout_secs: {secs} is out of range 1..={EXEC_MAX_TIMEOUT_SECS}")));
    }
    let out = backend
        .exec(&req.command, std::time::Duration::from_secs(secs), &|| false)
        .map_err(|e| backend_failure("exec failed: ", e))?;
    Ok(Reply::ok(out))
}

fn lock(backend: &dyn Backend) -> Result<MutexGuard<'_, NvdimmPlatform>, Reply> {
    // A vCPU thread that panicked while holding the lock leaves the model in an unknown
    // state; refuse rather than report or change it.
    backend
        .platform()
        .lock()
        .map_err(|_| Reply::error(500, "the device model is unusable: a VMM thread panicked while changing it"))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request("request body missing: this endpoint takes a JSON object (see docs/api.md)"));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("invalid request body: {e}")))
}

fn path_index(req: &Request<'_>, p: &NvdimmPlatform) -> Result<usize, Reply> {
    let raw = req.index.unwrap_or("");
    // Decimal digits only, no sign, no leading zeros: one spelling per DIMM (`/dimms/+0`
    // and `/dimms/00` are not `/dimms/0`).
    let canonical = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0'));
    let index: usize = raw.parse().ok().filter(|_| canonical).ok_or_else(|| {
        bad_request(format!(
            "DIMM index `{raw}` is not a non-negative integer (decimal digits, no sign or leading zeros)"
        ))
    })?;
    let count = p.dimms().len();
    if index >= count {
        return Err(Reply::error(404, format!("no nvdimm #{index}: the VM has {count} nvdimms, numbered from 0")));
    }
    Ok(index)
}

fn vm_info(backend: &dyn Backend) -> Result<VmResponse, Reply> {
    let info = backend.info();
    let p = lock(backend)?;
    Ok(VmResponse {
        api_version: "v1".to_string(),
        backend: info.backend,
        state: info.state,
        memory_bytes: info.memory_bytes,
        cpus: info.cpus,
        uptime_ms: info.uptime_ms,
        capabilities: info.capabilities,
        persistence_domain: p.config().persistence_domain.as_str().to_string(),
        dimm_count: p.dimms().len(),
    })
}

fn power_off(backend: &dyn Backend) -> Outcome {
    backend.power_off().map_err(|e| backend_failure("power-off failed: ", e))?;
    Ok(Reply::ok(PowerOffResponse { state: backend.info().state }))
}

fn summary(p: &NvdimmPlatform, index: usize, flush_counts: &[u64]) -> DimmSummary {
    let dimm = &p.dimms()[index];
    let poison = p.poison_ranges(index).unwrap_or_default();
    DimmSummary {
        index,
        handle: dimm.handle(),
        ndctl_id: dimm.config.identity.ndctl_id(),
        path: dimm.config.path.display().to_string(),
        size: dimm.config.size,
        spa_base: p.spa_map().spa_of(index, 0),
        interleave_set: p.config().set_of_dimm(index),
        label_size: dimm.config.label_size,
        readonly: dimm.config.readonly,
        flush_hints: dimm.placement.flush_hints.len(),
        health: HealthSummary::of(&dimm.smart()),
        poison_ranges: poison.len(),
        poison_bytes: poison.iter().map(|(_, len)| len).sum(),
        flush_count: flush_counts.get(index).copied().unwrap_or(0),
    }
}

fn poison_list(p: &NvdimmPlatform, index: usize) -> PoisonList {
    let ranges: Vec<PoisonRange> = p
        .poison_ranges(index)
        .unwrap_or_default()
        .into_iter()
        .map(|(offset, length)| PoisonRange { offset, length, spa: p.spa_map().spa_of(index, offset) })
        .collect();
    let total_bytes = ranges.iter().map(|r| r.length).sum();
    PoisonList { dimm: index, ranges, total_bytes }
}

/// A poison range resolved to one DIMM.
struct Target {
    dimm: usize,
    offset: u64,
    length: u64,
    /// Guest physical address of `offset`.
    spa: u64,
}

impl Target {
    fn added(&self) -> AddedRange {
        AddedRange { dimm: self.dimm, offset: self.offset, length: self.length, spa: self.spa }
    }
}

/// The DIMM ranges of a resolved request when there is more than one (a `spa` range
/// across an interleave set), for the answer's `spread`.
fn spread(targets: &[Target]) -> Vec<AddedRange> {
    match targets.len() {
        1 => Vec::new(),
        _ => targets.iter().map(Target::added).collect(),
    }
}

/// Checks the addressing of a poison request and names the field that is wrong. The
/// answer is one DIMM range, or for a `spa` range across an interleave set one per DIMM
/// it touches, lowest address first.
fn resolve(
    p: &NvdimmPlatform,
    dimm: Option<usize>,
    offset: Option<Bytes>,
    spa: Option<Bytes>,
    length: Bytes,
) -> Result<Vec<Target>, Reply> {
    let length = length.0;
    if length == 0 {
        return Err(bad_request("length: must be at least 1 byte"));
    }
    let dimms = p.dimms();
    let map = p.spa_map();
    match (dimm, offset, spa) {
        (Some(index), Some(Bytes(offset)), None) => {
            let d = dimms.get(index).ok_or_else(|| {
                bad_request(format!("dimm: no nvdimm #{index}; the VM has {} nvdimms, numbered from 0", dimms.len()))
            })?;
            let size = d.config.size;
            if offset >= size {
                return Err(bad_request(format!(
                    "offset: {offset:#x} is beyond the end of nvdimm #{index}, whose media is {size:#x} bytes"
                )));
            }
            if length > size - offset {
                return Err(bad_request(format!(
                    "length: {offset:#x} + {length:#x} runs past the end of nvdimm #{index}, whose media is {size:#x} bytes"
                )));
            }
            Ok(vec![Target { dimm: index, offset, length, spa: map.spa_of(index, offset) }])
        }
        (None, None, Some(Bytes(spa))) => {
            let Some(window) = map.windows().iter().find(|w| w.contains(spa)) else {
                return Err(bad_request(format!(
                    "spa: {spa:#x} is not inside any nvdimm window (windows: {})",
                    windows(map)
                )));
            };
            let end = window.end();
            if length > end - spa {
                return Err(bad_request(format!(
                    "length: {spa:#x} + {length:#x} runs past the end of the window of {} at {end:#x}",
                    window_name(window)
                )));
            }
            let spans = map.dimm_spans(spa, length).unwrap_or_default();
            let mut targets: Vec<Target> = spans
                .into_iter()
                .map(|s| Target { dimm: s.dimm, offset: s.offset, length: s.len, spa: map.spa_of(s.dimm, s.offset) })
                .collect();
            targets.sort_by_key(|t| t.spa);
            Ok(targets)
        }
        (Some(_), None, None) => Err(bad_request("offset: required with dimm")),
        (None, Some(_), None) => Err(bad_request("dimm: required with offset")),
        (None, None, None) => Err(bad_request("give either dimm and offset, or spa")),
        _ => Err(bad_request("spa: give either dimm and offset, or spa, not both")),
    }
}

fn window_name(w: &SpaWindow) -> String {
    match w.set {
        Some(set) => format!("interleave set #{set} (nvdimms {:?})", w.members),
        None => format!("nvdimm #{}", w.members[0]),
    }
}

fn windows(map: &SpaMap) -> String {
    let list: Vec<String> =
        map.windows().iter().map(|w| format!("{} [{:#x}, {:#x})", window_name(w), w.base, w.end())).collect();
    list.join(", ")
}

fn security_failure(e: HostSecurityError) -> Reply {
    match e {
        HostSecurityError::NoSuchDimm { .. } => Reply::error(404, e.to_string()),
        HostSecurityError::ReadOnly { .. } => Reply::error(409, e.to_string()),
        HostSecurityError::LockWithoutPassphrase { .. } => bad_request(e.to_string()),
        HostSecurityError::Persist { .. } | HostSecurityError::Erase { .. } => Reply::error(500, e.to_string()),
    }
}

fn model_failure(e: HostPoisonError) -> Reply {
    match e {
        HostPoisonError::Persist { .. } => Reply::error(500, e.to_string()),
        other => bad_request(other.to_string()),
    }
}

fn add_poison(backend: &dyn Backend, req: PoisonRequest) -> Outcome {
    if req.machine_check == MachineCheckRequest::ActionOptional
        && !backend.info().capabilities.action_optional_machine_check
    {
        return Err(Reply::error(
            501,
            format!(
                "machine_check: the {} backend cannot deliver action-optional machine checks; \
                 use \"none\" (with notify: true the guest still learns of the error)",
                backend.info().backend
            ),
        ));
    }
    let targets = {
        let mut p = lock(backend)?;
        let targets = resolve(&p, req.dimm, req.offset, req.spa, req.length)?;
        for t in &targets {
            p.add_poison(t.dimm, t.offset, t.length).map_err(model_failure)?;
            p.log_event(EventKind::PoisonAdded { dimm: t.dimm, offset: t.offset, length: t.length });
        }
        if req.notify {
            p.notify_new_errors();
        }
        targets
    };
    let recorded = "the poison was recorded, but ";
    for t in &targets {
        backend.poison_changed(t.dimm).map_err(|e| backend_failure(recorded, e))?;
    }
    if req.notify {
        backend.raise_notifications().map_err(|e| backend_failure(recorded, e))?;
    }
    let t = &targets[0];
    if req.machine_check == MachineCheckRequest::ActionOptional {
        backend.machine_check(t.spa, MachineCheckKind::ActionOptional).map_err(|e| backend_failure(recorded, e))?;
    }
    Ok(Reply::ok(PoisonAdded {
        dimm: t.dimm,
        offset: t.offset,
        length: t.length,
        spa: t.spa,
        notified: req.notify,
        machine_check: req.machine_check,
        spread: spread(&targets),
    }))
}

/// Whether a `POST /poison` body is the batch form (`{"ranges": [...]}`). Decided on
/// the key alone, so each form keeps its own precise error messages.
fn is_batch(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, Value>>(body).is_ok_and(|m| m.contains_key("ranges"))
}

/// `reply`'s message with `prefix` in front (which range of a batch it is about).
fn prefixed(mut reply: Reply, prefix: &str) -> Reply {
    if let Some(message) = reply.body.get("error").and_then(Value::as_str) {
        reply.body = json!({ "error": format!("{prefix}{message}") });
    }
    reply
}

/// Many ranges, validated together before any is recorded; each DIMM's ranges are
/// recorded with one durable journal append (all or none per DIMM).
fn add_poison_batch(backend: &dyn Backend, req: PoisonBatchRequest) -> Outcome {
    if req.ranges.is_empty() {
        return Err(bad_request("ranges: empty; give at least one range"));
    }
    let (added, dimms) = {
        let mut p = lock(backend)?;
        let mut targets = Vec::with_capacity(req.ranges.len());
        for (i, r) in req.ranges.iter().enumerate() {
            let resolved =
                resolve(&p, r.dimm, r.offset, r.spa, r.length).map_err(|e| prefixed(e, &format!("ranges[{i}].")))?;
            targets.extend(resolved);
        }
        let mut dimms: Vec<usize> = targets.iter().map(|t| t.dimm).collect();
        dimms.sort_unstable();
        dimms.dedup();
        // Each range adds at most one separate range: checked before anything changes.
        for &d in &dimms {
            let adding = targets.iter().filter(|t| t.dimm == d).count();
            let have = p.dimms()[d].state.poison.len();
            if have + adding > MAX_RANGES {
                return Err(bad_request(format!(
                    "ranges: nvdimm #{d} holds {have} poison ranges; {adding} more could exceed its maximum of {MAX_RANGES}"
                )));
            }
        }
        let mut recorded: Vec<usize> = Vec::new();
        for &d in &dimms {
            let ranges: Vec<(u64, u64)> =
                targets.iter().filter(|t| t.dimm == d).map(|t| (t.offset, t.length)).collect();
            if let Err(e) = p.add_poison_ranges(d, &ranges) {
                if recorded.is_empty() {
                    return Err(model_failure(e));
                }
                return Err(Reply::error(
                    500,
                    format!("the ranges of nvdimm(s) {recorded:?} were recorded, those of nvdimm #{d} and after were not: {e}"),
                ));
            }
            recorded.push(d);
        }
        for t in &targets {
            p.log_event(EventKind::PoisonAdded { dimm: t.dimm, offset: t.offset, length: t.length });
        }
        if req.notify {
            p.notify_new_errors();
        }
        let added: Vec<AddedRange> = targets
            .iter()
            .map(Target::added)
            .collect();
        (added, dimms)
    };
    let recorded = "the poison was recorded, but ";
    for d in dimms {
        backend.poison_changed(d).map_err(|e| backend_failure(recorded, e))?;
    }
    if req.notify {
        backend.raise_notifications().map_err(|e| backend_failure(recorded, e))?;
    }
    Ok(Reply::ok(PoisonBatchAdded { ranges: added, notified: req.notify }))
}

fn clear_poison(backend: &dyn Backend, req: ClearPoisonRequest) -> Outcome {
    let (targets, cleared) = {
        let mut p = lock(backend)?;
        let targets = resolve(&p, req.dimm, req.offset, req.spa, req.length)?;
        let mut cleared = 0;
        for t in &targets {
            let removed = p.clear_poison(t.dimm, t.offset, t.length).map_err(model_failure)?;
            if removed > 0 {
                p.log_event(EventKind::PoisonCleared { dimm: t.dimm, offset: t.offset, length: t.length });
            }
            cleared += removed;
        }
        (targets, cleared)
    };
    if cleared > 0 {
        for t in &targets {
            backend.poison_changed(t.dimm).map_err(|e| backend_failure("the poison was cleared, but ", e))?;
        }
    }
    let t = &targets[0];
    Ok(Reply::ok(PoisonCleared {
        dimm: t.dimm,
        offset: t.offset,
        length: t.length,
        spa: t.spa,
        cleared_bytes: cleared,
        spread: spread(&targets),
    }))
}

fn health_response(dimm: &Dimm, index: usize, notified: Option<bool>) -> HealthResponse {
    HealthResponse {
        dimm: index,
        smart: dimm.smart(),
        host: dimm.state.health.clone(),
        thresholds: dimm.state.thresholds,
        injection: dimm.state.injection,
        notified,
    }
}

/// Applies `change` to copies of the DIMM's host SMART values and thresholds (it
/// returns which of the two it changed, or a 400 for an empty update), then sets them.
fn set_health(
    backend: &dyn Backend,
    req: &Request<'_>,
    change: impl FnOnce(&mut SmartHealth, &mut SmartThresholds) -> Result<(bool, bool), Reply>,
) -> Outcome {
    let (reply, notified) = {
        let mut p = lock(backend)?;
        let i = path_index(req, &p)?;
        let mut health = p.dimms()[i].state.health.clone();
        let mut thresholds = p.dimms()[i].state.thresholds;
        let (health_changed, thresholds_changed) = change(&mut health, &mut thresholds)?;
        let result = p.set_dimm_health(i, health_changed.then_some(health), thresholds_changed.then_some(thresholds));
        let change = result.map_err(|e| match e {
            HostHealthError::NoSuchDimm { .. } => Reply::error(404, e.to_string()),
            HostHealthError::Invalid { .. } => bad_request(e.to_string()),
            HostHealthError::Dimm { .. } => Reply::error(500, e.to_string()),
        })?;
        (health_response(&p.dimms()[i], i, Some(change.notified)), change.notified)
    };
    if notified {
        backend
            .raise_notifications()
            .map_err(|e| backend_failure("the health was changed, but raising its notification failed: ", e))?;
    }
    Ok(Reply::ok(reply))
}

fn apply_health_update(u: &HealthUpdate, h: &mut SmartHealth, t: &mut SmartThresholds) -> Result<(bool, bool), Reply> {
    let mut flags = 0;
    let mut set = |bit: u32| flags |= bit;
    if let Some(v) = u.state {
        h.state = v;
        set(valid::HEALTH);
    }
    if let Some(v) = u.spares_percent {
        h.spares_percent = v;
        set(valid::SPARES);
    }
    if let Some(v) = u.life_used_percent {
        h.life_used_percent = v;
        set(valid::LIFE_USED);
    }
    // `{"alarm_trips": {}}` names no alarm: not a change (the thresholds' alarms alike, below).
    if let Some(v) = u.alarm_trips.as_ref().filter(|v| !v.is_empty()) {
        v.apply(&mut h.alarm_trips);
        set(valid::ALARM_TRIPS);
    }
    if let Some(v) = u.media_temperature {
        h.media_temperature = v;
        set(valid::MEDIA_TEMPERATURE);
    }
    if let Some(v) = u.controller_temperature {
        h.controller_temperature = v;
        set(valid::CONTROLLER_TEMPERATURE);
    }
    if let Some(v) = u.pmic_temperature {
        h.pmic_temperature = v;
        set(valid::PMIC_TEMPERATURE);
    }
    if let Some(v) = u.unsafe_shutdown_count {
        h.unsafe_shutdown_count = v;
        set(valid::SHUTDOWN_COUNT);
    }
    if let Some(v) = u.last_shutdown_state {
        h.last_shutdown_state = v;
        set(valid::LAST_SHUTDOWN_STATE);
    }
    if let Some(v) = u.ait_dram_status {
        h.ait_dram_status = v;
        set(valid::AIT_DRAM_STATUS);
    }
    if let Some(v) = &u.vendor_data {
        h.vendor_data = v.clone();
        set(valid::VENDOR_DATA);
    }
    let fields_set = flags != 0;
    match u.valid {
        Some(v) => h.valid = v,
        None => h.valid |= flags,
    }
    let health_changed = fields_set || u.valid.is_some();
    let thresholds_changed = match &u.thresholds {
        Some(tu) => {
            if let Some(a) = &tu.alarm_control {
                a.apply(&mut t.alarm_control);
            }
            if let Some(v) = tu.spares_percent {
                t.spares_percent = v;
            }
            if let Some(v) = tu.media_temperature {
                t.media_temperature = v;
            }
            if let Some(v) = tu.controller_temperature {
                t.controller_temperature = v;
            }
            tu.alarm_control.is_some_and(|a| !a.is_empty())
                || tu.spares_percent.is_some()
                || tu.media_temperature.is_some()
                || tu.controller_temperature.is_some()
        }
        None => false,
    };
    if !health_changed && !thresholds_changed {
        return Err(bad_request("the body names no field to change (see docs/api.md for the health fields)"));
    }
    Ok((health_changed, thresholds_changed))
}

fn apply_shutdown_update(u: &ShutdownStateUpdate, h: &mut SmartHealth) -> Result<(bool, bool), Reply> {
    if u.dirty_shutdown_count.is_none() && u.last_shutdown_state.is_none() {
        return Err(bad_request("give dirty_shutdown_count, last_shutdown_state or both"));
    }
    if let Some(v) = u.dirty_shutdown_count {
        h.unsafe_shutdown_count = v;
        h.valid |= valid::SHUTDOWN_COUNT;
    }
    if let Some(v) = u.last_shutdown_state {
        h.last_shutdown_state = v;
        h.valid |= valid::LAST_SHUTDOWN_STATE;
    }
    Ok((true, false))
}

fn ars_response(p: &NvdimmPlatform) -> ArsResponse {
    ArsResponse { rate_bytes_per_sec: p.ars_rate(), running: p.ars_running() }
}

fn events_since(query: &str) -> Result<u64, Reply> {
    let mut since = None;
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        match pair.split_once('=') {
            Some(("since", _)) if since.is_some() => {
                return Err(bad_request("since: given twice; give it once"));
            }
            Some(("since", v)) => {
                let n: u64 = v
                    .parse()
                    .map_err(|_| bad_request(format!("since: `{v}` is not a non-negative integer sequence number")))?;
                since = Some(n);
            }
            _ => return Err(bad_request(format!("unknown query parameter `{pair}`; /events takes since=N"))),
        }
    }
    Ok(since.unwrap_or(0))
}
