//! Boots the default guest image under QEMU TCG with `TcgVm`, the runner `vnvdimm run
//! --backend tcg` uses, and drives it only through the guest agent on ttyS2, by the
//! `Backend::exec` the API's `POST /exec` calls: `uname -r`, a cancelled command killed
//! with its children, every module of the image loads, and an fsdax namespace carries a
//! DAX-mounted ext4 and xfs. Needs qemu-system-x86_64 and the image recipe
//! (images/build-guest.sh). Missing QEMU is a failure, not a skip.
//!
//! Run: `cargo test -p vnvdimm-integration --test agent_tcg -- --nocapture`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nvdimm_model::config::{DimmConfig, PersistenceDomain, PlatformConfig, KIB, MIB};
use nvdimm_model::NvdimmPlatform;
use vnvdimm_control::backend::{Backend, BackendError};
use vnvdimm_integration::tcg_guest::TcgGuest;
use vnvdimm_tcg::{GuestImage, TcgLayout, TcgLayoutOptions, GuestOutcome};

const CMD_TIMEOUT: Duration = Duration::from_secs(120);

fn fail_setup(what: &str, err: impl std::fmt::Display) -> ! {
    panic!("TCG agent test cannot run: {what}: {err}");
}

#[test]
fn agent_runs_commands_in_the_default_guest() {
    vnvdimm_integration::require_qemu();
    let image = GuestImage::locate_or_build().unwrap_or_else(|e| fail_setup("guest image", e));
    let modules = std::fs::read_to_string(image.dir.join("modules"))
        .unwrap_or_else(|e| fail_setup("reading the image's module list", e));
    let work = tempfile::Builder::new()
        .prefix("vnv-agent-")
        .tempdir()
        .unwrap_or_else(|e| fail_setup("work dir", e));
    let dir = if std::env::var_os("VNV_KEEP_WORK").is_some() { work.keep() } else { work.path().to_path_buf() };
    eprintln!("work dir: {}", dir.display());

    // DIMM 1 is big enough for mkfs.xfs (300 MB minimum since xfsprogs 5.19).
    let mut d0 = DimmConfig::with_defaults(0, dir.join("nvdimm0.img"), 256 * MIB);
    d0.label_size = 128 * KIB;
    let mut d1 = DimmConfig::with_defaults(1, dir.join("nvdimm1.img"), 512 * MIB);
    d1.label_size = 128 * KIB;
    let config = PlatformConfig::new(vec![d0, d1], PersistenceDomain::MemoryController)
        .unwrap_or_else(|e| fail_setup("config", e));
    let layout = TcgLayout::new(&config, TcgLayoutOptions::default()).unwrap_or_else(|e| fail_setup("layout", e));
    let memory = layout.linux_ram_bytes();
    let platform = NvdimmPlatform::ephemeral(config, layout.platform_layout())
        .unwrap_or_else(|e| fail_setup("device model", e));
    let mut s = TcgGuest::start(&image, layout, Arc::new(Mutex::new(platform)), memory, &dir)
        .unwrap_or_else(|e| fail_setup("starting the guest", e));

    assert_eq!(s.ok("uname -r", CMD_TIMEOUT).trim(), image.kernel_release);
    let ready = s.started.elapsed();

    // A cancelled command (its API client went away) is killed with all it started, in
    // the real guest over the real serial line, and the agent serves the next one.
    let asked = Instant::now();
    let cancelled = s.vm.exec("sleep 600 & echo $! > /tmp/sleeper; wait", CMD_TIMEOUT, &|| {
        asked.elapsed() > Duration::from_secs(3)
    });
    assert!(
        matches!(&cancelled, Err(BackendError::Cancelled(why)) if why.contains("137")),
        "{cancelled:?}"
    );
    assert_ne!(s.exec("kill -0 $(cat /tmp/sleeper)", CMD_TIMEOUT).status, 0, "the command's child outlived the cancel");

    // Every module in the image loads (crc32c-intel needs SSE4.2, which qemu64 lacks;
    // it is only in the image as libcrc32c's optional soft dependency).
    for m in modules.split_whitespace().filter(|m| *m != "crc32c-intel") {
        s.ok(&format!("modprobe {m}"), CMD_TIMEOUT);
    }
    let lsmod = s.ok("cat /proc/modules", CMD_TIMEOUT);
    for m in modules.split_whitespace().filter(|m| *m != "crc32c-intel") {
        let name = m.replace('-', "_");
        assert!(
            lsmod.lines().any(|l| l.split(' ').next() == Some(name.as_str())),
            "module {name} not loaded:\n{lsmod}"
        );
    }

    let dimms = s.ok("ndctl list -D", CMD_TIMEOUT);
    assert_eq!(dimms.matches("\"dev\":\"nmem").count(), 2, "{dimms}");
    let out = s.exec("ndctl list --no-such-option", CMD_TIMEOUT);
    assert_ne!(out.status, 0, "a failing command reports its status");

    // fsdax namespaces on both regions, then ext4 (4 KiB blocks: DAX needs block size ==
    // page size, and mke2fs picks 1 KiB for small devices) on one and xfs on the other, mounted -o dax.
    s.ok("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all", CMD_TIMEOUT);
    for region in ["region0", "region1"] {
        s.ok(&format!("ndctl create-namespace -m fsdax -r {region}"), CMD_TIMEOUT);
    }
    let pmems = s.ok("ls /dev/ | grep '^pmem'", CMD_TIMEOUT);
    assert_eq!(pmems.split_whitespace().count(), 2, "{pmems}");
    // The xfs goes on the larger device.
    let big = s.ok(
        "for b in /sys/block/pmem*; do echo $(cat $b/size) ${b##*/}; done | sort -n | tail -n1 | cut -d' ' -f2",
        CMD_TIMEOUT,
    );
    let big = big.trim().to_string();
    let small = if big == "pmem0" { "pmem1" } else { "pmem0" };
    for (dev, mkfs, dir) in
        [(small, "mkfs.ext4 -F -q -b 4096", "/mnt/ext4"), (big.as_str(), "mkfs.xfs -f -q -m reflink=0", "/mnt/xfs")]
    {
        s.ok(&format!("{mkfs} /dev/{dev}"), CMD_TIMEOUT);
        s.ok(&format!("mkdir -p {dir} && mount -o dax /dev/{dev} {dir}"), CMD_TIMEOUT);
        let mounts = s.ok(&format!("grep ' {dir} ' /proc/mounts"), CMD_TIMEOUT);
        assert!(mounts.contains("dax"), "{dir} not mounted with dax: {mounts}");
        s.ok(&format!("echo persistent > {dir}/f && sync && cat {dir}/f"), CMD_TIMEOUT);
        s.ok(
            &format!("umount {dir} && mount -o dax /dev/{dev} {dir} && grep -x persistent {dir}/f && umount {dir}"),
            CMD_TIMEOUT,
        );
    }
    let dmesg = s.ok("dmesg", CMD_TIMEOUT);
    assert!(dmesg.lines().any(|l| l.contains("DAX") || l.contains("dax")), "no DAX line in dmesg");

    eprintln!("{}", s.log.join("\n"));
    let wall = s.started.elapsed();
    let exit = s.stop();
    eprintln!("agent ready after {ready:?}; the guest ran {wall:?}");
    assert!(matches!(exit, GuestOutcome::HostStopped(_)), "{exit}");
}
