//! `vnvdimm demo`: boots Debian's 6.1 kernel on the built-in default platform exactly as
//! a user would (`vnvdimm run --api-socket`, the command's own code path; QEMU TCG where
//! KVM cannot boot Linux), poisons a range through the control API, and shows in plain
//! words what the guest's ndctl saw: the DIMMs with their ids and health, the labels, a
//! namespace, and the poison found again by an Address Range Scrub.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use nvdimm_model::config::{KIB, MIB};
use nvdimm_model::sync::LockUnpoisoned;
use nvdimm_model::PlatformConfig;
use serde_json::{json, Value};
use vnvdimm_control::ApiClient;

use crate::cli::Failure;

/// Poison placed near the end of DIMM 0, so it lands in namespace data.
const POISON_FROM_END: u64 = 2 * MIB;
const POISON_LEN: u64 = 4 * KIB;
/// How long the VMM has to serve its API, and each guest command to finish.
const API_WAIT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT_SECS: u64 = 300;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the work directory (backing files, API socket) here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// What one guest command printed, and whether it succeeded.
struct Step {
    ok: bool,
    output: String,
}

/// What the demo saw.
struct DemoRun {
    ready_after: Duration,
    steps: BTreeMap<&'static str, Step>,
}

pub fn run(args: &DemoArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let temp;
    let work = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Failure::usage(format!("--keep {}: {e}", dir.display())))?;
            dir.clone()
        }
        None => {
            temp = tempdir()?;
            temp.0.clone()
        }
    };
    let say = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
    };
    let config = PlatformConfig::default_in(&work);
    let poison_offset = config.dimms[0].size - POISON_FROM_END;
    say(out, format!("Platform: {} NVDIMMs, persistence domain {}", config.dimms.len(), config.persistence_domain.as_str()));
    for dimm in &config.dimms {
        say(
            out,
            format!(
                "  handle {:#06x}  id {}  {} MiB  label area {} KiB",
                dimm.handle,
                dimm.identity.ndctl_id(),
                dimm.size / MIB,
                dimm.label_size / KIB
            ),
        );
    }
    say(out, "Booting the default guest image (Debian 6.1) with `vnvdimm run --api-socket` (the image is built on first use)...".into());
    let result = boot_and_drive(&config, &work, poison_offset, out)?;
    report(&result, &config, poison_offset, out)
}

/// `vnvdimm run` in this process, driven through its API as a user's script would.
fn boot_and_drive(config: &PlatformConfig, work: &Path, poison_offset: u64, out: &mut dyn Write) -> Result<DemoRun, Failure> {
    let socket = work.join("api.sock");
    let mut args: Vec<String> = ["vnvdimm", "run", "--memory", "512M", "--persistence-domain", config.persistence_domain.as_str()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for dimm in &config.dimms {
        std::fs::File::create(&dimm.path)
            .and_then(|f| f.set_len(dimm.size))
            .map_err(|e| Failure::other(format!("creating {}: {e}", dimm.path.display())))?;
        args.extend(["--nvdimm".into(), format!("path={},size={},label-size={}", dimm.path.display(), dimm.size, dimm.label_size)]);
    }
    args.extend(["--api-socket".into(), socket.display().to_string()]);
    let stderr = Arc::new(Mutex::new(Vec::<u8>::new()));
    let vmm_err = stderr.clone();
    let started = Instant::now();
    let vmm = std::thread::spawn(move || {
        let mut err = Vec::new();
        let code = crate::cli::run_args(args, &mut std::io::sink(), &mut err);
        vmm_err.lock_unpoisoned().extend_from_slice(&err);
        code
    });
    let vmm_failed = |what: String| {
        Failure::other(format!("{what}; vnvdimm run said:\n{}", String::from_utf8_lossy(&stderr.lock_unpoisoned())))
    };
    while !socket.exists() {
        if vmm.is_finished() || started.elapsed() > API_WAIT {
            let code = vmm.join().ok();
            return Err(vmm_failed(format!("vnvdimm run ended or never served its API (exit {code:?})")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let api = ApiClient::new(&socket).with_timeout(Duration::from_secs(STEP_TIMEOUT_SECS + 60));
    let poisoned = api.post("/poison", &json!({ "dimm": 0, "offset": poison_offset, "length": POISON_LEN }));
    if !poisoned.as_ref().is_ok_and(|r| r.is_success()) {
        let _ = api.request("PUT", "/vm/power-off", None::<&Value>);
        let _ = vmm.join();
        return Err(vmm_failed(format!("POST /poison failed: {poisoned:?}")));
    }
    let _ = writeln!(out, "Host poisoned {POISON_LEN} bytes of DIMM 0 at offset {poison_offset:#x} through the control API.");
    let mut steps = BTreeMap::new();
    let mut ready_after = None;
    for (name, command) in STEPS {
        // The first command also waits for the guest to boot and its agent to come up.
        let step = exec(&api, command);
        ready_after.get_or_insert_with(|| started.elapsed());
        let failed = !step.ok;
        steps.insert(*name, step);
        if failed && matches!(*name, "dimms" | "disable" | "init_labels" | "enable") {
            break;
        }
    }
    let _ = api.request("PUT", "/vm/power-off", None::<&Value>);
    let code = vmm.join().map_err(|_| Failure::other("vnvdimm run panicked (a vnvdimm bug)"))?;
    if code != 0 {
        return Err(vmm_failed(format!("vnvdimm run ended with status {code}")));
    }
    Ok(DemoRun { ready_after: ready_after.unwrap_or_default(), steps })
}

/// What the demo runs in the guest, in order (the real ndctl of the image).
const STEPS: &[(&str, &str)] = &[
    ("dimms", "ndctl list -DH"),
    ("bus", "ndctl list -B -v"),
    ("disable", "ndctl disable-region all"),
    ("init_labels", "ndctl init-labels all"),
    ("enable", "ndctl enable-region all"),
    ("namespace", "ndctl create-namespace -r region0"),
    ("scrub", "ndctl start-scrub && ndctl wait-scrub"),
    ("badblocks", "for r in /sys/bus/nd/devices/region*; do echo \"$(basename $r) $(cat $r/resource)\"; cat $r/badblocks; done"),
    ("media_errors", "ndctl list -RM"),
];

fn exec(api: &ApiClient, command: &str) -> Step {
    match api.post("/exec", &json!({ "command": command, "timeout_secs": STEP_TIMEOUT_SECS })) {
        Ok(r) if r.is_success() => Step {
            ok: r.body["status"].as_i64() == Some(0),
            output: r.body["output"].as_str().unwrap_or_default().to_string(),
        },
        Ok(r) => Step { ok: false, output: format!("HTTP {} {}", r.status, r.body) },
        Err(e) => Step { ok: false, output: e.to_string() },
    }
}

fn report(result: &DemoRun, config: &PlatformConfig, poison_offset: u64, out: &mut dyn Write) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    line(format!("Guest answered its first command {:.1} s after the start.", result.ready_after.as_secs_f64()));
    let step = |name: &str| result.steps.get(name).filter(|r| r.ok).map(|r| r.output.clone());

    match step("dimms").and_then(|s| serde_json::from_str::<Value>(&s).ok()) {
        Some(dimms) => {
            let list = dimms.as_array().cloned().unwrap_or_else(|| vec![dimms.clone()]);
            line(format!("ndctl sees {} DIMMs:", list.len()));
            for d in &list {
                line(format!(
                    "  {}  id {}  handle {}  health {}",
                    d["dev"].as_str().unwrap_or("?"),
                    d["id"].as_str().unwrap_or("?"),
                    d["handle"],
                    d["health"]["health_state"].as_str().unwrap_or("?")
                ));
            }
            for dimm in &config.dimms {
                let id = dimm.identity.ndctl_id();
                if !list.iter().any(|d| d["id"].as_str() == Some(id.as_str())) {
                    problems.push(format!("no DIMM with id {id} in the guest"));
                }
            }
        }
        None => problems.push("`ndctl list -DH` failed".to_string()),
    }
    for (name, what) in [("init_labels", "labels initialised"), ("namespace", "namespace created on region0")] {
        match step(name) {
            Some(_) => line(format!("ok: {what}")),
            None => problems.push(format!("{what}: failed")),
        }
    }
    if let Some(text) = step("media_errors") {
        line(format!("After `ndctl start-scrub` / `wait-scrub`, `ndctl list -RM` reports:\n{}", indent(&text)));
    }
    // Region 0 is DIMM 0's window, so its badblocks count 512-byte sectors from the DIMM's start.
    let expected = format!("{} {}", poison_offset / 512, POISON_LEN / 512);
    match step("badblocks") {
        Some(b) => {
            line(format!("Region badblocks (sector, count):\n{}", indent(&b)));
            if !b.lines().any(|l| l.trim() == expected) {
                problems.push(format!("region0 badblocks lack the poisoned sectors `{expected}`"));
            }
        }
        None => problems.push("reading region badblocks failed".to_string()),
    }
    if problems.is_empty() {
        line("Demo finished: the guest saw the emulated NVDIMMs as real ones.".to_string());
        Ok(())
    } else {
        Err(Failure::other(format!("demo checks failed: {}", problems.join("; "))))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir, Failure> {
    let dir = std::env::temp_dir().join(format!("vnvdimm-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure::other(format!("creating {}: {e}", dir.display())))?;
    Ok(TempDir(dir))
}
