//! Boots Debian's unmodified 6.1 kernel under QEMU TCG with our NFIT and NVDIMM SSDT
//! (`TcgVm`, the runner `vnvdimm run --backend tcg` uses), serves the `_DSM` mailbox
//! from the device model, and checks what Linux and ndctl report inside the guest
//! (commands through the agent, as `POST /exec` runs them). Needs qemu-system-x86_64 and the guest image recipe
//! (images/build-guest.sh: Debian packages). Missing QEMU is a failure, not a skip.
//!
//! Run: `cargo test -p vnvdimm-integration --test linux_tcg -- --nocapture`
//! (the summary of what the guest saw is printed either way). The guest's console,
//! results and QEMU command line stay in the work directory printed at the start when
//! VNV_KEEP_WORK=1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, KIB, MIB};
use nvdimm_model::NvdimmPlatform;
use serde_json::Value;
use vnvdimm_control::backend::ExecOutput;
use vnvdimm_integration::tcg_guest::TcgGuest;
use vnvdimm_tcg::{GuestImage, TcgLayout, TcgLayoutOptions, GuestOutcome};

const DIMM_SIZE: u64 = 256 * MIB;
/// Poison placed before boot: near the end of DIMM 0, so it lands in the data area of
/// an fsdax namespace (whose metadata sits at the start).
const POISON_OFFSET: u64 = DIMM_SIZE - 2 * MIB;
const POISON_LEN: u64 = 4 * KIB;
const DOMAIN: PersistenceDomain = PersistenceDomain::MemoryController;
const TIMEOUT: Duration = Duration::from_secs(240);

fn platform_config(dir: &std::path::Path) -> PlatformConfig {
    let mut d0 = DimmConfig::with_defaults(0, dir.join("nvdimm0.img"), DIMM_SIZE);
    d0.label_size = KIB;
    let mut d1 = DimmConfig::with_defaults(1, dir.join("nvdimm1.img"), DIMM_SIZE);
    d1.label_size = 128 * KIB;
    d1.flush_hints = 2;
    PlatformConfig::new(vec![d0, d1], DOMAIN).expect("test configuration is valid")
}

/// What one guest left behind: each step's answer, the console, the mailbox counters.
struct GuestRun {
    steps: Vec<(&'static str, ExecOutput)>,
    console: String,
    exit: GuestOutcome,
    wall: Duration,
    ready_after: Duration,
    dsm_calls_served: u64,
    dsm_kicks: u64,
    command_line: String,
}

impl GuestRun {
    fn get(&self, step: &str) -> Option<&ExecOutput> {
        self.steps.iter().find(|(name, _)| *name == step).map(|(_, out)| out)
    }
}

/// The steps, in order: (name, command).
fn guest_steps(region0_spa: u64) -> Vec<(&'static str, String)> {
    let find_region = format!(
        "for r in /sys/bus/nd/devices/region*; do [ \"$(cat $r/resource)\" = \"{region0_spa:#x}\" ] && basename $r; done"
    );
    let mut s = Steps::default();
    s.step("bus_dsm_mask", "cat /sys/bus/nd/devices/ndbus*/nfit/dsm_mask")
        .step(
            "nmem_sysfs",
            "for d in /sys/bus/nd/devices/nmem*; do echo \"$(basename $d) id=$(cat $d/nfit/id) \
             handle=$(cat $d/nfit/handle) family=$(cat $d/nfit/family) dsm_mask=$(cat $d/nfit/dsm_mask) \
             flags=$(cat $d/nfit/flags)\"; done",
        )
        .step(
            "region_sysfs",
            "for r in /sys/bus/nd/devices/region*; do echo \"$(basename $r) resource=$(cat $r/resource) \
             size=$(cat $r/size) persistence_domain=$(cat $r/persistence_domain 2>/dev/null || echo absent) \
             mappings=$(cat $r/mappings) deep_flush=$(cat $r/deep_flush 2>/dev/null || echo absent)\"; done",
        )
        .step("list_initial", "ndctl list -BDRNH -i")
        .step("disable_region", "ndctl disable-region all")
        .step("init_labels", "ndctl init-labels all")
        .step("read_labels", "ndctl read-labels -j all")
        .step("enable_region", "ndctl enable-region all")
        .step(
            "create_namespace",
            &format!("ndctl create-namespace -r $({find_region})"),
        )
        .step("start_scrub", "ndctl start-scrub")
        .step("wait_scrub", "ndctl wait-scrub")
        .step(
            "region_badblocks",
            "for r in /sys/bus/nd/devices/region*; do echo \"$(basename $r) resource=$(cat $r/resource)\"; \
             cat $r/badblocks; done",
        )
        .step(
            "pmem_badblocks",
            "for b in /sys/block/pmem*; do echo \"$(basename $b):\"; cat $b/badblocks; done",
        )
        .step("media_errors", "ndctl list -RNM")
        .step("list_final", "ndctl list -BDRNH -i")
        .step("iomem", "cat /proc/iomem")
        .step("dmesg", "dmesg -r");
    s.0
}

#[derive(Default)]
struct Steps(Vec<(&'static str, String)>);

impl Steps {
    fn step(&mut self, name: &'static str, command: &str) -> &mut Self {
        self.0.push((name, command.to_string()));
        self
    }
}

fn fail_setup(what: &str, err: impl std::fmt::Display) -> ! {
    panic!("TCG guest test cannot run: {what}: {err}");
}

#[test]
fn linux_under_tcg_sees_our_nvdimms() {
    vnvdimm_integration::require_qemu();
    let image = GuestImage::locate_or_build().unwrap_or_else(|e| fail_setup("guest image", e));
    let work = tempfile::Builder::new()
        .prefix("vnv-tcg-")
        .tempdir()
        .unwrap_or_else(|e| fail_setup("work dir", e));
    let work_path = if std::env::var_os("VNV_KEEP_WORK").is_some() {
        work.keep()
    } else {
        work.path().to_path_buf()
    };
    eprintln!("work dir: {}", work_path.display());

    let config = platform_config(&work_path);
    let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap_or_else(|e| fail_setup("layout", e));
    let mut platform = NvdimmPlatform::ephemeral(config.clone(), layout.platform_layout())
        .unwrap_or_else(|e| fail_setup("device model", e));
    platform
        .add_poison(0, POISON_OFFSET, POISON_LEN)
        .unwrap_or_else(|e| fail_setup("add_poison", e));
    let platform = Arc::new(Mutex::new(platform));

    let out = run_guest(&image, &layout, platform, &work_path);

    let failures = check(&out, &config, &layout);
    print_summary(&out, &layout);
    assert!(
        failures.is_empty(),
        "{} check(s) failed:\n- {}\n(console tail:\n{})",
        failures.len(),
        failures.join("\n- "),
        tail(&out.console, 40)
    );
}

/// Boots the guest, runs every step through the agent, powers it off.
fn run_guest(image: &GuestImage, layout: &TcgLayout, platform: Arc<Mutex<NvdimmPlatform>>, work: &std::path::Path) -> GuestRun {
    let mut guest = TcgGuest::start(image, layout.clone(), platform, layout.linux_ram_bytes(), work)
        .unwrap_or_else(|e| fail_setup("starting the guest", e));
    let mut steps = Vec::new();
    let mut ready_after = None;
    for (name, command) in guest_steps(layout.windows[0].start) {
        let out = guest.exec(&command, TIMEOUT);
        ready_after.get_or_insert(guest.started.elapsed());
        steps.push((name, out));
    }
    let (dsm_calls_served, dsm_kicks) = (guest.vm.dsm_calls_served(), guest.vm.dsm_kicks());
    let command_line = guest.vm.command_line().to_string();
    let wall = guest.started.elapsed();
    let console_log = guest.console_log.clone();
    let started = Instant::now();
    let exit = guest.stop();
    let console = String::from_utf8_lossy(&std::fs::read(console_log).unwrap_or_default()).into_owned();
    eprintln!("powered off in {:?}", started.elapsed());
    GuestRun {
        steps,
        console,
        exit,
        wall,
        ready_after: ready_after.unwrap_or_default(),
        dsm_calls_served,
        dsm_kicks,
        command_line,
    }
}

fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn output<'a>(out: &'a GuestRun, step: &str, failures: &mut Vec<String>) -> Option<&'a str> {
    match out.get(step) {
        Some(r) if r.status == 0 => Some(r.output.as_str()),
        Some(r) => {
            failures.push(format!(
                "guest step `{step}` exited with {}: {}",
                r.status,
                r.output.trim()
            ));
            Some(r.output.as_str())
        }
        None => {
            failures.push(format!("guest step `{step}` never ran"));
            None
        }
    }
}

/// `key=value` pairs of the line starting with `name `.
fn sysfs_line<'a>(text: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|kv| kv.split_once('='))
                .collect()
        })
        .unwrap_or_default()
}

fn field<'a>(pairs: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn hex(s: &str) -> Option<u64> {
    let s = s.trim();
    s.strip_prefix("0x")
        .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
}

fn json_value(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(hex))
}

/// All objects in a JSON document that have key `key` (ndctl nests differently by flags).
fn objects_with<'a>(v: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            if map.contains_key(key) {
                found.push(v);
            }
            map.values().for_each(|c| objects_with(c, key, found));
        }
        Value::Array(items) => items.iter().for_each(|c| objects_with(c, key, found)),
        _ => {}
    }
}

fn check(out: &GuestRun, config: &PlatformConfig, layout: &TcgLayout) -> Vec<String> {
    let mut f = Vec::new();
    if !matches!(out.exit, GuestOutcome::HostStopped(_)) {
        f.push(format!("the guest ended on its own before it was powered off: {}", out.exit));
    }
    for bad in ["Initramfs unpacking failed", "Kernel panic", "BUG:", "Oops"] {
        if let Some(line) = out.console.lines().find(|l| l.contains(bad)) {
            f.push(format!("console: {}", line.trim()));
        }
    }

    // Bus: ARS (1-3), clear error (4), translate SPA (5), injection (7-9).
    if let Some(text) = output(out, "bus_dsm_mask", &mut f) {
        match hex(text) {
            Some(mask) => {
                for func in [1, 2, 3, 4, 5, 7, 8, 9] {
                    if mask & (1 << func) == 0 {
                        f.push(format!("bus dsm_mask {mask:#x} lacks root function {func}"));
                    }
                }
            }
            None => f.push(format!("bus dsm_mask unreadable: {text:?}")),
        }
    }

    // DIMMs: id, handle, family, dsm_mask from sysfs (nmemN order is not config order).
    if let Some(text) = output(out, "nmem_sysfs", &mut f) {
        for (i, dimm) in config.dimms.iter().enumerate() {
            let want_id = dimm.identity.ndctl_id();
            let line = text.lines().find(|l| l.contains(&format!("id={want_id} ")));
            let Some(line) = line else {
                f.push(format!("no nmem with id {want_id} (nvdimm #{i}); sysfs says:\n{text}"));
                continue;
            };
            let name = line.split_whitespace().next().unwrap_or("?");
            let pairs = sysfs_line(text, name);
            if field(&pairs, "handle").and_then(hex) != Some(u64::from(dimm.handle)) {
                f.push(format!(
                    "{name}: handle {:?}, expected {:#x}",
                    field(&pairs, "handle"),
                    dimm.handle
                ));
            }
            // sysfs prints the family number; NVDIMM_FAMILY_INTEL is 0 (ndctl's "intel").
            if field(&pairs, "family") != Some("0") {
                f.push(format!(
                    "{name}: family {:?}, expected 0 (NVDIMM_FAMILY_INTEL)",
                    field(&pairs, "family")
                ));
            }
            match field(&pairs, "dsm_mask").and_then(hex) {
                Some(mask) => {
                    for (func, what) in [
                        (1, "SMART health"),
                        (2, "SMART threshold"),
                        (4, "label size"),
                        (5, "label read"),
                        (6, "label write"),
                    ] {
                        if mask & (1 << func) == 0 {
                            f.push(format!(
                                "{name}: dsm_mask {mask:#x} lacks Intel function {func} ({what})"
                            ));
                        }
                    }
                }
                None => f.push(format!("{name}: dsm_mask unreadable: {line}")),
            }
        }
    }

    // ndctl's own view: ids and handles.
    if let Some(text) = output(out, "list_initial", &mut f) {
        match serde_json::from_str::<Value>(text) {
            Ok(json) => {
                let mut dimms = Vec::new();
                objects_with(&json, "dev", &mut dimms);
                let dimms: Vec<_> = dimms.into_iter().filter(|d| d.get("id").is_some()).collect();
                for d in &config.dimms {
                    let id = d.identity.ndctl_id();
                    match dimms.iter().find(|j| j["id"] == id.as_str()) {
                        // ndctl only shows health for DIMMs of a family it has SMART support for.
                        Some(j) if j.get("health").is_none() => f.push(format!(
                            "ndctl: DIMM {id} shows no health (intel SMART not recognised): {j}"
                        )),
                        Some(j) if j.get("handle").and_then(json_value) == Some(u64::from(d.handle)) => {}
                        Some(j) => f.push(format!(
                            "ndctl: DIMM {id} has handle {}, expected {:#x}",
                            j["handle"], d.handle
                        )),
                        None => f.push(format!("ndctl list shows no DIMM with id {id}")),
                    }
                }
            }
            Err(e) => f.push(format!("ndctl list -BDRNH output is not JSON ({e}): {text}")),
        }
    }

    // Regions: one per window, with the configured persistence domain.
    if let Some(text) = output(out, "region_sysfs", &mut f) {
        for (i, w) in layout.windows.iter().enumerate() {
            let line = text.lines().find(|l| l.contains(&format!("resource={:#x} ", w.start)));
            match line {
                None => f.push(format!(
                    "no region at nvdimm #{i}'s window {:#x}; regions:\n{text}",
                    w.start
                )),
                Some(l) => {
                    let name = l.split_whitespace().next().unwrap_or("?");
                    let pairs = sysfs_line(text, name);
                    let want = DOMAIN.as_str();
                    if field(&pairs, "persistence_domain") != Some(want) {
                        f.push(format!(
                            "{name}: persistence_domain {:?}, expected {want}",
                            field(&pairs, "persistence_domain")
                        ));
                    }
                }
            }
        }
    }

    for step in ["disable_region", "init_labels", "read_labels", "enable_region"] {
        output(out, step, &mut f);
    }
    if let Some(text) = output(out, "create_namespace", &mut f) {
        if !text.contains("\"dev\":\"namespace") {
            f.push(format!("create-namespace printed no namespace: {text}"));
        }
    }
    output(out, "start_scrub", &mut f);
    output(out, "wait_scrub", &mut f);

    // The pre-boot poison, as a region badblock (512-byte sectors from the region start).
    let want_sector = POISON_OFFSET / 512;
    let want_len = POISON_LEN / 512;
    if let Some(text) = output(out, "region_badblocks", &mut f) {
        let mut in_region0 = false;
        let mut found = false;
        for line in text.lines() {
            if line.starts_with("region") {
                in_region0 = line.contains(&format!("resource={:#x}", layout.windows[0].start));
            } else if in_region0 {
                let nums: Vec<u64> = line.split_whitespace().filter_map(|n| n.parse().ok()).collect();
                if nums.len() == 2 && nums[0] <= want_sector && want_sector + want_len <= nums[0] + nums[1] {
                    found = true;
                }
            }
        }
        if !found {
            f.push(format!(
                "pre-boot poison (sector {want_sector}, {want_len} sectors of nvdimm #0's region) not in region badblocks:\n{text}"
            ));
        }
    }
    if let Some(text) = output(out, "pmem_badblocks", &mut f) {
        let lines = text.lines().filter(|l| l.split_whitespace().count() == 2).count();
        if lines == 0 {
            f.push(format!(
                "no pmem block device lists a bad block after the scrub:\n{text}"
            ));
        }
    }
    output(out, "media_errors", &mut f);

    if let Some(text) = output(out, "iomem", &mut f) {
        for (i, hints) in layout.hints.iter().enumerate() {
            for h in hints {
                let needle = format!("{h:08x}-");
                if !text.lines().any(|l| l.trim_start().starts_with(&needle)) {
                    f.push(format!(
                        "flush hint {h:#x} of nvdimm #{i} is not claimed in /proc/iomem"
                    ));
                }
            }
        }
    }

    // dmesg: no warnings or errors from the NVDIMM stack or ACPI (raw levels 0-4).
    if let Some(text) = output(out, "dmesg", &mut f) {
        let keys = [
            "nfit", "nvdimm", "ndbus", "nmem", "region", "pmem", "dax", "ACPI", "DSM", "badblock", "btt",
        ];
        for line in text.lines() {
            let level = line
                .strip_prefix('<')
                .and_then(|l| l.split('>').next())
                .and_then(|n| n.parse::<u32>().ok());
            let level = level.map(|l| l & 7);
            if matches!(level, Some(0..=4)) && keys.iter().any(|k| line.contains(k)) {
                f.push(format!("dmesg: {line}"));
            }
        }
    }
    if out.dsm_calls_served == 0 {
        f.push("the mailbox poller answered no _DSM call".into());
    }
    // Every NCAL writes the kick port once; the poller should have been woken by each
    // call rather than finding it by polling (docs/tcg-backend.md).
    if out.dsm_kicks != out.dsm_calls_served {
        f.push(format!(
            "{} kicks for {} served _DSM calls: the debugcon wake-up path is broken",
            out.dsm_kicks, out.dsm_calls_served
        ));
    }
    f
}

fn print_summary(out: &GuestRun, layout: &TcgLayout) {
    eprintln!("---- TCG guest summary ----");
    eprintln!("command: {}", out.command_line);
    eprintln!(
        "layout: ram {:#x}, linux ram {:x?}, windows {:x?}, mailbox {:#x}, hints {:x?}",
        layout.ram_size, layout.linux_ram, layout.windows, layout.mailbox, layout.hints
    );
    eprintln!(
        "exit: {}, wall {:?}, host time to the first answer {:?}, DSM calls {} (kicks {})",
        out.exit, out.wall, out.ready_after, out.dsm_calls_served, out.dsm_kicks
    );
    for (name, step) in &out.steps {
        if *name == "dmesg" || *name == "iomem" {
            continue;
        }
        eprintln!("[{name}] status {}\n{}", step.status, step.output.trim_end());
    }
}
