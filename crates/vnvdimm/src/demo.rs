//! `vnvdimm demo`: boots Debian's 6.1 kernel under QEMU TCG on the built-in default
//! platform, poisons a range before boot, and shows in plain words what the guest's
//! ndctl saw: the DIMMs with their ids and health, the labels, a namespace, and the
//! poison found again by an Address Range Scrub.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use nvdimm_model::config::{KIB, MIB};
use nvdimm_model::{NvdimmPlatform, PlatformConfig};
use serde_json::Value;
use vnvdimm_tcg::{Guest, GuestImage, GuestOutput, GuestSpec, Script, TcgLayout, TcgLayoutOptions};

use crate::cli::Failure;

/// Poison placed before boot, near the end of DIMM 0 so it lands in namespace data.
const POISON_FROM_END: u64 = 2 * MIB;
const POISON_LEN: u64 = 4 * KIB;
const GUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the work directory (RAM file, tables, console log) here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
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

    say(out, "Building or locating the guest image (Debian 6.1 kernel + initramfs)...".into());
    let image = GuestImage::locate_or_build().map_err(|e| Failure::other(format!("guest image: {e}")))?;

    let config = PlatformConfig::default_in(&work);
    let layout = TcgLayout::new(&config, TcgLayoutOptions::default())
        .map_err(|e| Failure::other(format!("TCG memory layout: {e}")))?;
    let mut platform = NvdimmPlatform::ephemeral(config.clone(), layout.platform_layout())
        .map_err(|e| Failure::other(format!("device model: {e}")))?;
    let poison_offset = config.dimms[0].size - POISON_FROM_END;
    platform
        .add_poison(0, poison_offset, POISON_LEN)
        .map_err(|e| Failure::other(format!("poison: {e}")))?;
    let poison_spa = layout.windows[0].start + poison_offset;

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
    say(out, format!("Host poisoned {POISON_LEN} bytes of DIMM 0 at offset {poison_offset:#x} (SPA {poison_spa:#x}) before boot."));
    say(out, "Booting the guest under QEMU TCG...".into());

    let platform = Arc::new(Mutex::new(platform));
    let mut spec = GuestSpec::new(image, layout.clone(), platform, &work);
    spec.script = script();
    let result = Guest::run(&spec, GUEST_TIMEOUT).map_err(|e| Failure::other(format!("guest: {e}")))?;
    report(&result, &config, poison_offset, out)
}

fn script() -> Script {
    let mut s = Script::new();
    s.step("dimms", "ndctl list -DH")
        .step("bus", "ndctl list -B -v")
        .step("disable", "ndctl disable-region all")
        .step("init_labels", "ndctl init-labels all")
        .step("enable", "ndctl enable-region all")
        .step("namespace", "ndctl create-namespace -r region0")
        .step("scrub", "ndctl start-scrub && ndctl wait-scrub")
        .step("badblocks", "for r in /sys/bus/nd/devices/region*; do echo \"$(basename $r) $(cat $r/resource)\"; cat $r/badblocks; done")
        .step("media_errors", "ndctl list -RM");
    s
}

fn report(result: &GuestOutput, config: &PlatformConfig, poison_offset: u64, out: &mut dyn Write) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{text}");
    };
    match result.ready_after {
        Some(t) => line(format!("Guest ready after {:.1} s; {} _DSM calls served.", t.as_secs_f64(), result.dsm_calls_served)),
        None => problems.push("the guest never reported ready".to_string()),
    }
    let step = |name: &str| result.results.get(name).filter(|r| r.ok()).map(|r| r.output.clone());

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
