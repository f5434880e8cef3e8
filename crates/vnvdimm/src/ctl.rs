//! `vnvdimm ctl --api-socket PATH ...`: the command-line client of the control API
//! (docs/api.md), one subcommand per endpoint. Prints the answer as pretty JSON; exit
//! status 0 when the API accepted the request, 1 when it refused it or cannot be
//! reached (the message says why), 2 for a usage error.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use nvdimm_model::config::parse_size;
use nvdimm_model::health::{HealthState, Temperature};
use serde::Serialize;
use serde_json::Value;
use vnvdimm_control::types::{
    AlarmsUpdate, ArsUpdate, Bytes, ClearPoisonRequest, ExecRequest, HealthUpdate, MachineCheckRequest, PoisonRequest,
    SecurityUpdate,
    ShutdownStateUpdate, ThresholdsUpdate,
};
use vnvdimm_control::{ApiClient, ApiResponse, ClientError, ExecOutput};

use crate::cli::{Failure, EXIT_OK};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The socket given to `vnvdimm run --api-socket` (default: $VNVDIMM_API_SOCKET, which
    /// `vnvdimm test --script` sets for its script).
    #[arg(long, value_name = "PATH", env = "VNVDIMM_API_SOCKET")]
    pub api_socket: PathBuf,
    /// Give up when the VMM has not answered within this many seconds, connecting
    /// included (exit 1). `exec` waits its own --timeout plus 60 s instead.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub api_timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The VM: backend, state, memory, CPUs, persistence domain, uptime (GET /vm).
    Info,
    /// Stop the guest like pulling the power (PUT /vm/power-off).
    PowerOff,
    /// Every NVDIMM with its health, poison and flush counts (GET /dimms).
    Dimms,
    /// One NVDIMM (GET /dimms/{index}).
    Dimm { index: usize },
    /// Media errors: list, add, clear.
    #[command(subcommand)]
    Poison(PoisonCommand),
    /// SMART health: get, set.
    #[command(subcommand)]
    Health(HealthCommand),
    /// Set the dirty-shutdown count and last shutdown state (PUT /dimms/{index}/shutdown-state).
    ShutdownState(ShutdownArgs),
    /// DIMM security (passphrase, lock, freeze, overwrite time): get, set.
    #[command(subcommand)]
    Security(SecurityCommand),
    /// DIMM firmware (versions, update progress; provoke failures): get, set.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
    /// Address Range Scrub speed: get, set.
    #[command(subcommand)]
    Ars(ArsCommand),
    /// The event log: DSM calls, flushes, machine checks, notifications (GET /events).
    Events(EventsArgs),
    /// Run a shell command in the guest through its agent; print its output and exit
    /// with its status (POST /exec). Words after `--` are joined with spaces, like ssh.
    Exec(ExecArgs),
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The guest kills the command after this many seconds (exit status 137).
    #[arg(long, value_name = "SECONDS", default_value_t = vnvdimm_control::types::EXEC_DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// The command, e.g. `-- ndctl list -D`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PoisonCommand {
    /// The poisoned ranges of a DIMM (GET /dimms/{index}/poison).
    List { index: usize },
    /// Mark a range bad (POST /poison).
    Add(PoisonAddArgs),
    /// Make a range good again (DELETE /poison).
    Clear(PoisonRangeArgs),
    /// Mark many ranges bad, one per line of a file: `dimm=N offset=BYTES length=BYTES`
    /// or `spa=ADDR length=BYTES` (POST /poison batches; every line checked first).
    AddBatch(PoisonBatchArgs),
}

#[derive(Debug, Args)]
pub struct PoisonBatchArgs {
    /// The ranges, one per line (`#` starts a comment); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Raise Notify(root, 0x81) once, after the last range, so the guest rescans.
    #[arg(long)]
    pub notify: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("address").required(true).args(["dimm", "spa"])))]
pub struct PoisonRangeArgs {
    /// DIMM number (with --offset).
    #[arg(long, requires = "offset")]
    pub dimm: Option<usize>,
    /// Offset into the DIMM's media: 4096, 0x1000, 4K.
    #[arg(long, value_parser = parse_bytes, requires = "dimm")]
    pub offset: Option<u64>,
    /// Guest physical address inside a DIMM window (instead of --dimm/--offset).
    #[arg(long, value_parser = parse_bytes, conflicts_with_all = ["dimm", "offset"])]
    pub spa: Option<u64>,
    /// Bytes: 512, 4K, 0x1000.
    #[arg(long, value_parser = parse_bytes)]
    pub length: u64,
}

#[derive(Debug, Args)]
pub struct PoisonAddArgs {
    #[command(flatten)]
    pub range: PoisonRangeArgs,
    /// Also raise Notify(root, 0x81) so the guest rescans.
    #[arg(long)]
    pub notify: bool,
    /// Also deliver a machine check (KVM only).
    #[arg(long, value_name = "KIND", default_value = "none", value_parser = ["none", "action-optional"])]
    pub machine_check: String,
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Running and staged versions, update progress, activation state.
    Get { index: usize },
    /// Provoke a failure or set the verify time (PUT /dimms/{index}/firmware).
    Set(FirmwareSetArgs),
}

#[derive(Debug, Args)]
pub struct FirmwareSetArgs {
    pub index: usize,
    /// bad-image, busy or activation: the DIMM fails once, at the next finish, start or live activation.
    #[arg(long, value_parser = parse_firmware_fault, conflicts_with = "cancel_fault")]
    pub fail_next: Option<nvdimm_model::firmware::FirmwareFault>,
    /// Cancel a provoked failure not yet taken.
    #[arg(long)]
    pub cancel_fault: bool,
    /// How long the DIMM verifies an image after finish, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub verify_time_ms: Option<u64>,
}

fn parse_firmware_fault(s: &str) -> Result<nvdimm_model::firmware::FirmwareFault, String> {
    use nvdimm_model::firmware::FirmwareFault::*;
    match s {
        "bad-image" | "bad_image" => Ok(BadImage),
        "busy" => Ok(Busy),
        "activation" => Ok(Activation),
        other => Err(format!("`{other}` is not one of bad-image, busy, activation")),
    }
}

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// The state Linux sees (disabled, unlocked, locked, frozen, overwrite) and the counters.
    Get { index: usize },
    /// Prepare a state, e.g. a locked DIMM (PUT /dimms/{index}/security).
    Set(SecuritySetArgs),
}

#[derive(Debug, Args)]
pub struct SecuritySetArgs {
    pub index: usize,
    /// Set the user passphrase (1-32 bytes of text, zero-padded).
    #[arg(long, conflicts_with_all = ["passphrase_hex", "remove_passphrase"])]
    pub passphrase: Option<String>,
    /// Set the user passphrase as 64 hex digits.
    #[arg(long, conflicts_with = "remove_passphrase")]
    pub passphrase_hex: Option<String>,
    /// Remove the user passphrase (security disabled).
    #[arg(long)]
    pub remove_passphrase: bool,
    #[arg(long)]
    pub master_passphrase: Option<String>,
    /// true or false.
    #[arg(long)]
    pub master_enabled: Option<bool>,
    /// true (needs a passphrase) or false.
    #[arg(long)]
    pub locked: Option<bool>,
    /// true or false: frozen until the next power-on.
    #[arg(long)]
    pub frozen: Option<bool>,
    /// Forget wrong-passphrase counts.
    #[arg(long)]
    pub reset_attempts: bool,
    /// How long the next overwrite takes, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub overwrite_time_ms: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum HealthCommand {
    /// SMART values as the guest reads them, the host's values, thresholds, injection.
    Get { index: usize },
    /// Change some SMART values; the others stay (PUT /dimms/{index}/health).
    Set(HealthSetArgs),
}

#[derive(Debug, Args)]
pub struct HealthSetArgs {
    pub index: usize,
    /// ok, non-critical, critical or fatal.
    #[arg(long, value_parser = parse_health_state)]
    pub state: Option<HealthState>,
    /// Remaining spare capacity, percent.
    #[arg(long)]
    pub spares: Option<u8>,
    /// Percentage of the rated life used.
    #[arg(long)]
    pub life_used: Option<u8>,
    /// Degrees Celsius, in steps of 1/16.
    #[arg(long, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub media_temperature: Option<Temperature>,
    #[arg(long, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub controller_temperature: Option<Temperature>,
    #[arg(long, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub pmic_temperature: Option<Temperature>,
    /// Spares alarm tripped: true or false.
    #[arg(long)]
    pub alarm_spares: Option<bool>,
    #[arg(long)]
    pub alarm_media_temperature: Option<bool>,
    #[arg(long)]
    pub alarm_controller_temperature: Option<bool>,
    #[arg(long)]
    pub unsafe_shutdown_count: Option<u32>,
    /// clean, dirty, or the raw byte.
    #[arg(long, value_parser = parse_shutdown_state)]
    pub last_shutdown_state: Option<u8>,
    #[arg(long)]
    pub ait_dram_status: Option<u8>,
    /// Validation flags to publish (replaces the automatic ones): 0x6ff.
    #[arg(long, value_parser = parse_u32)]
    pub valid: Option<u32>,
    /// Threshold below which the spares alarm trips (when enabled).
    #[arg(long)]
    pub threshold_spares: Option<u8>,
    #[arg(long, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub threshold_media_temperature: Option<Temperature>,
    #[arg(long, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub threshold_controller_temperature: Option<Temperature>,
    /// Enable the spares alarm: true or false.
    #[arg(long)]
    pub enable_alarm_spares: Option<bool>,
    #[arg(long)]
    pub enable_alarm_media_temperature: Option<bool>,
    #[arg(long)]
    pub enable_alarm_controller_temperature: Option<bool>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("fields").required(true).multiple(true)
    .args(["dirty_shutdown_count", "last_shutdown_state"])))]
pub struct ShutdownArgs {
    pub index: usize,
    #[arg(long)]
    pub dirty_shutdown_count: Option<u32>,
    /// clean, dirty, or the raw byte.
    #[arg(long, value_parser = parse_shutdown_state)]
    pub last_shutdown_state: Option<u8>,
}

#[derive(Debug, Subcommand)]
pub enum ArsCommand {
    /// The scrub speed and whether a scrub is running (GET /ars).
    Get,
    /// Set the speed of scrubs started from now on (PUT /ars).
    Set {
        /// Bytes per second: 1G, 512M, 1073741824.
        #[arg(long, value_parser = parse_bytes)]
        rate: u64,
    },
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events with a sequence number greater than this.
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Keep polling and print each new event as one JSON line, until the VMM exits.
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop after this many events.
    #[arg(long, requires = "follow")]
    pub max_events: Option<u64>,
    /// With --follow: milliseconds between polls.
    #[arg(long, default_value_t = 200, requires = "follow")]
    pub interval_ms: u64,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size(s)
}

fn parse_u32(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("{s} does not fit in 32 bits"))
}

fn parse_health_state(s: &str) -> Result<HealthState, String> {
    s.parse()
}

fn parse_temperature(s: &str) -> Result<Temperature, String> {
    let degrees: f64 = s.parse().map_err(|_| format!("`{s}` is not a number of degrees Celsius"))?;
    Temperature::from_celsius_f64(degrees).map_err(|e| e.to_string())
}

fn parse_shutdown_state(s: &str) -> Result<u8, String> {
    match s {
        "clean" => Ok(0),
        "dirty" => Ok(1),
        _ => s.parse().map_err(|_| "expected clean, dirty or a number 0..=255".to_string()),
    }
}

pub fn run(args: &CtlArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let client = ApiClient::new(&args.api_socket).with_timeout(Duration::from_secs(args.api_timeout));
    let answer = match &args.command {
        CtlCommand::Info => client.get("/vm"),
        CtlCommand::PowerOff => client.request("PUT", "/vm/power-off", None::<&Value>),
        CtlCommand::Dimms => client.get("/dimms"),
        CtlCommand::Dimm { index } => client.get(&format!("/dimms/{index}")),
        CtlCommand::Poison(PoisonCommand::List { index }) => client.get(&format!("/dimms/{index}/poison")),
        CtlCommand::Poison(PoisonCommand::Add(a)) => client.post("/poison", &poison_request(a)),
        CtlCommand::Poison(PoisonCommand::AddBatch(a)) => return poison_batch(&client, a, out),
        CtlCommand::Poison(PoisonCommand::Clear(r)) => {
            let (dimm, offset, spa, length) = address(r);
            client.delete("/poison", &ClearPoisonRequest { dimm, offset, spa, length })
        }
        CtlCommand::Health(HealthCommand::Get { index }) => client.get(&format!("/dimms/{index}/health")),
        CtlCommand::Health(HealthCommand::Set(a)) => {
            client.put(&format!("/dimms/{}/health", a.index), &health_update(a)?)
        }
        CtlCommand::ShutdownState(a) => client.put(
            &format!("/dimms/{}/shutdown-state", a.index),
            &ShutdownStateUpdate {
                dirty_shutdown_count: a.dirty_shutdown_count,
                last_shutdown_state: a.last_shutdown_state,
            },
        ),
        CtlCommand::Security(SecurityCommand::Get { index }) => client.get(&format!("/dimms/{index}/security")),
        CtlCommand::Security(SecurityCommand::Set(a)) => client.put(
            &format!("/dimms/{}/security", a.index),
            &SecurityUpdate {
                passphrase: a.passphrase.clone(),
                passphrase_hex: a.passphrase_hex.clone(),
                remove_passphrase: a.remove_passphrase,
                master_passphrase: a.master_passphrase.clone(),
                master_enabled: a.master_enabled,
                locked: a.locked,
                frozen: a.frozen,
                reset_attempts: a.reset_attempts,
                overwrite_time_ms: a.overwrite_time_ms,
            },
        ),
        CtlCommand::Firmware(FirmwareCommand::Get { index }) => client.get(&format!("/dimms/{index}/firmware")),
        CtlCommand::Firmware(FirmwareCommand::Set(a)) => client.put(
            &format!("/dimms/{}/firmware", a.index),
            &vnvdimm_control::types::FirmwareUpdate {
                fail_next: a.fail_next,
                cancel_fault: a.cancel_fault,
                verify_time_ms: a.verify_time_ms,
            },
        ),
        CtlCommand::Ars(ArsCommand::Get) => client.get("/ars"),
        CtlCommand::Ars(ArsCommand::Set { rate }) => {
            client.put("/ars", &ArsUpdate { rate_bytes_per_sec: Bytes(*rate) })
        }
        CtlCommand::Events(a) if a.follow => return follow(&client, a, out, err),
        CtlCommand::Events(a) => client.get(&format!("/events?since={}", a.since)),
        CtlCommand::Exec(a) => return exec(&client, a, out),
    };
    print_answer(answer, out)
}

fn poison_batch(client: &ApiClient, a: &PoisonBatchArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let text = crate::ctl_poison_batch::read(&a.file)
        .map_err(|e| Failure::usage(format!("--file {}: {e}", a.file.display())))?;
    let ranges = crate::ctl_poison_batch::parse(&text)
        .map_err(|e| Failure::usage(format!("--file {}: {e}", a.file.display())))?;
    crate::ctl_poison_batch::send(client, ranges, a.notify, out).map_err(Failure::other)?;
    Ok(EXIT_OK)
}

/// Room on top of the guest's timeout for the agent's transfer and the HTTP round trip.
const EXEC_CLIENT_GRACE: Duration = Duration::from_secs(60);

fn exec(client: &ApiClient, a: &ExecArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let request = ExecRequest { command: a.command.join(" "), timeout_secs: Some(a.timeout) };
    let client = client.clone().with_timeout(Duration::from_secs(a.timeout).saturating_add(EXEC_CLIENT_GRACE));
    let answer = client.post("/exec", &request).map_err(|e| Failure::other(e.to_string()))?;
    if !answer.is_success() {
        let message = answer.error_message().map(str::to_string).unwrap_or_else(|| answer.body.to_string());
        return Err(Failure::other(format!("{message} (HTTP {})", answer.status)));
    }
    let result: ExecOutput = serde_json::from_value(answer.body.clone())
        .map_err(|e| Failure::other(format!("unexpected answer to POST /exec: {e}: {}", answer.body)))?;
    out.write_all(result.output.as_bytes()).map_err(|e| Failure::other(format!("cannot write the output: {e}")))?;
    let _ = out.flush();
    // Shell convention: statuses are 0..=255; anything else (never sent by the agent) is a failure.
    Ok(u8::try_from(result.status).unwrap_or(crate::cli::EXIT_FAILURE))
}

fn address(r: &PoisonRangeArgs) -> (Option<usize>, Option<Bytes>, Option<Bytes>, Bytes) {
    (r.dimm, r.offset.map(Bytes), r.spa.map(Bytes), Bytes(r.length))
}

fn poison_request(a: &PoisonAddArgs) -> PoisonRequest {
    let (dimm, offset, spa, length) = address(&a.range);
    let machine_check = match a.machine_check.as_str() {
        "action-optional" => MachineCheckRequest::ActionOptional,
        _ => MachineCheckRequest::None,
    };
    PoisonRequest { dimm, offset, spa, length, notify: a.notify, machine_check }
}

fn health_update(a: &HealthSetArgs) -> Result<HealthUpdate, Failure> {
    let alarms = |spares, media, controller| {
        let update = AlarmsUpdate { spares, media_temperature: media, controller_temperature: controller };
        (!update.is_empty()).then_some(update)
    };
    let thresholds = ThresholdsUpdate {
        alarm_control: alarms(
            a.enable_alarm_spares,
            a.enable_alarm_media_temperature,
            a.enable_alarm_controller_temperature,
        ),
        spares_percent: a.threshold_spares,
        media_temperature: a.threshold_media_temperature,
        controller_temperature: a.threshold_controller_temperature,
    };
    let update = HealthUpdate {
        state: a.state,
        spares_percent: a.spares,
        life_used_percent: a.life_used,
        alarm_trips: alarms(a.alarm_spares, a.alarm_media_temperature, a.alarm_controller_temperature),
        media_temperature: a.media_temperature,
        controller_temperature: a.controller_temperature,
        pmic_temperature: a.pmic_temperature,
        unsafe_shutdown_count: a.unsafe_shutdown_count,
        last_shutdown_state: a.last_shutdown_state,
        ait_dram_status: a.ait_dram_status,
        vendor_data: None,
        valid: a.valid,
        thresholds: (thresholds != ThresholdsUpdate::default()).then_some(thresholds),
    };
    if update == HealthUpdate::default() {
        return Err(Failure::usage("health set: give at least one field to change (see --help)"));
    }
    Ok(update)
}

fn print_answer(answer: Result<ApiResponse, ClientError>, out: &mut dyn Write) -> Result<u8, Failure> {
    let answer = answer.map_err(|e| Failure::other(e.to_string()))?;
    if !answer.is_success() {
        let message = answer.error_message().map(str::to_string).unwrap_or_else(|| answer.body.to_string());
        return Err(Failure::other(format!("{message} (HTTP {})", answer.status)));
    }
    print_json(out, &answer.body, true)?;
    Ok(EXIT_OK)
}

/// Whether `error` means the VMM is no longer there: its socket is gone or not listening,
/// or it ended in the middle of the request (killed, or exiting).
fn vmm_went_away(error: &ClientError) -> bool {
    match error {
        ClientError::NoSocket { .. } | ClientError::NotListening { .. } => true,
        ClientError::Io { source, .. } => {
            matches!(source.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
        _ => false,
    }
}

fn print_json(out: &mut dyn Write, value: &impl Serialize, pretty: bool) -> Result<(), Failure> {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    let text = text.map_err(|e| Failure::other(format!("cannot print the answer: {e}")))?;
    writeln!(out, "{text}").map_err(|e| Failure::other(format!("cannot write the output: {e}")))
}

/// Polls `/events` and prints each new event as one JSON line. Ends when the VMM goes
/// away after having answered (that is how a followed VM ends), or after `--max-events`.
/// A 503 (the VMM is stopping, or busy) is asked again after the interval: a stopping
/// VMM is gone by then.
fn follow(client: &ApiClient, a: &EventsArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, Failure> {
    let mut since = a.since;
    let mut printed = 0u64;
    let mut answered = false;
    loop {
        let answer = match client.get(&format!("/events?since={since}")) {
            Ok(answer) => answer,
            Err(e) if answered && vmm_went_away(&e) => {
                let _ = writeln!(err, "the VMM exited");
                return Ok(EXIT_OK);
            }
            Err(e) => return Err(Failure::other(e.to_string())),
        };
        answered = true;
        if answer.status == 503 {
            std::thread::sleep(Duration::from_millis(a.interval_ms));
            continue;
        }
        if !answer.is_success() {
            return print_answer(Ok(answer), out);
        }
        let events = answer.body.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
        for event in events {
            if let Some(seq) = event.get("seq").and_then(Value::as_u64) {
                since = since.max(seq);
            }
            print_json(out, &event, false)?;
            let _ = out.flush();
            printed += 1;
            if a.max_events.is_some_and(|max| printed >= max) {
                return Ok(EXIT_OK);
            }
        }
        std::thread::sleep(Duration::from_millis(a.interval_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A VMM's API as `events --follow` meets it while the VMM stops: one event, then
    /// "shutting down" (503) to the next poll, then a connection reset, then no socket.
    fn stopping_vmm(path: std::path::PathBuf) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let answers = [
                (200, r#"{"events":[{"seq":1,"type":"poison_added"}]}"#),
                (503, r#"{"error":"the VMM is shutting down"}"#),
            ];
            for (status, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request);
                let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n", body.len());
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body.as_bytes()).unwrap();
            }
            // The process ends in the middle of the next request: closed unread, reset.
            let (stream, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(stream);
            std::fs::remove_file(&path).unwrap();
        })
    }

    #[test]
    fn follow_ends_quietly_when_the_vmm_stops_mid_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let server = stopping_vmm(path.clone());
        let client = ApiClient::new(&path).with_timeout(Duration::from_secs(10));
        let args = EventsArgs { since: 0, follow: true, max_events: None, interval_ms: 10 };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = follow(&client, &args, &mut out, &mut err);
        server.join().unwrap();
        let err = String::from_utf8_lossy(&err);
        assert!(matches!(result, Ok(EXIT_OK)), "{:?} {err}", result.err().map(|f| f.message));
        assert_eq!(String::from_utf8_lossy(&out).lines().count(), 1);
        assert!(err.contains("the VMM exited"), "{err}");
    }

    #[test]
    fn only_a_vanished_vmm_counts_as_gone() {
        let path = std::path::PathBuf::from("/x.sock");
        let io = |kind| ClientError::Io { path: path.clone(), source: std::io::Error::from(kind) };
        assert!(vmm_went_away(&ClientError::NoSocket { path: path.clone() }));
        assert!(vmm_went_away(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!vmm_went_away(&io(std::io::ErrorKind::PermissionDenied)));
        assert!(!vmm_went_away(&ClientError::Timeout { path: path.clone(), after: Duration::from_secs(1) }));
    }
}
