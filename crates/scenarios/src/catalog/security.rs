//! DIMM security (issue 11) with the real kernel and ndctl, following ndctl's own
//! test/security.sh (which runs only on nfit_test) on a platform that reboots for real:
//! a passphrase set through the kernel keyring flow makes the DIMM boot locked, its
//! namespace unreadable until ndctl's keys are loaded and the DIMM re-probed; crypto
//! erase and overwrite really clear the backing file; freeze refuses changes.

use serde_json::{json, Value};

use super::{as_list, boot, Guest, Vm, Work, MIB};

const SIZE: u64 = 256 * MIB;
/// Where the marker is written through the namespace's block device.
const MARKER_SECTOR: u64 = 4096;

fn dimm_field(vm: &mut Vm, field: &str) -> Value {
    // -i: a locked DIMM's driver does not bind; idle DIMMs are listed too.
    let listing = vm.json("ndctl list -D -i -d nmem0");
    let dimm = as_list(&listing).into_iter().next().unwrap_or_else(|| panic!("no nmem0: {listing}"));
    dimm.get(field).cloned().unwrap_or(Value::Null)
}

fn security(vm: &mut Vm) -> String {
    dimm_field(vm, "security").as_str().unwrap_or("(none)").to_string()
}

fn host_security(vm: &mut Vm) -> Value {
    vm.api("GET", "/dimms/0/security", None)
}

fn backing_has(path: &std::path::Path, marker: &str) -> bool {
    let data = std::fs::read(path).unwrap();
    data.windows(marker.len()).any(|w| w == marker.as_bytes())
}

fn write_marker(vm: &mut Vm, marker: &str) {
    vm.ok("ndctl enable-region all");
    let dev = vm.blockdev_of(1);
    vm.ok(&format!(
        "printf '%s' {marker} | dd of=/dev/{dev} bs=512 seek={MARKER_SECTOR} conv=notrunc,fsync 2>/dev/null"
    ));
}

fn read_marker(vm: &mut Vm, marker: &str) -> String {
    let dev = vm.blockdev_of(1);
    vm.ok(&format!("dd if=/dev/{dev} bs=512 skip={MARKER_SECTOR} count=1 2>/dev/null | head -c {}", marker.len()))
}

pub fn s12_security_passphrase_lock_erase_overwrite_freeze(guest: impl Into<Guest>) {
    let work = Work::new("security", guest);
    let path = work.dimm("a.img", SIZE);
    let dimms = [format!("path={},size=256M,label-size=128K,handle=1", path.display())];
    let marker = format!("vnvdimm-security-marker-{}", std::process::id());

    // Boot 1: a namespace with data, then a passphrase through the kernel keyring.
    let mut vm = boot(&work, &dimms, &[]);
    assert_eq!(security(&mut vm), "disabled");
    vm.ok("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all");
    vm.ok("ndctl create-namespace -m raw -r region0");
    write_marker(&mut vm, &marker);
    assert_eq!(read_marker(&mut vm, &marker), marker);
    vm.ok(
        "mkdir -p /etc/ndctl/keys && dd if=/dev/urandom bs=1 count=32 2>/dev/null | keyctl padd user nvdimm-master @u \
         && keyctl pipe $(keyctl search @u user nvdimm-master) > /etc/ndctl/keys/nvdimm-master.blob",
    );
    // ndctl changes security only on a DIMM with no active region.
    vm.ok("ndctl disable-region all && ndctl setup-passphrase nmem0 -k user:nvdimm-master");
    assert_eq!(security(&mut vm), "unlocked");
    let host = host_security(&mut vm);
    assert_eq!((host["passphrase_set"].as_bool(), host["state"].as_str()), (Some(true), Some("unlocked")), "{host}");
    // The keys live in the guest's /etc, an initramfs: carried to the next boot by the test.
    let keys = vm.ok("cd /etc/ndctl/keys && for f in *.blob; do echo \"$f $(base64 $f | tr -d '\\n')\"; done");
    let keys: Vec<(String, String)> = keys
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, b)| (n.to_string(), b.to_string())))
        .collect();
    assert_eq!(keys.len(), 2, "the master key blob and the DIMM's key blob: {keys:?}");
    vm.stop();
    assert!(backing_has(&path, &marker), "the marker is in the backing file");

    // Boot 2: the DIMM comes up locked; nothing of it is readable until the keys are loaded.
    let mut vm = boot(&work, &dimms, &[]);
    assert_eq!(security(&mut vm), "locked");
    assert_eq!(host_security(&mut vm)["locked"], json!(true));
    let namespaces = vm.json("ndctl list -N");
    assert!(as_list(&namespaces).is_empty(), "a locked DIMM's namespace is not readable: {namespaces}");
    for (name, b64) in &keys {
        vm.ok(&format!("mkdir -p /etc/ndctl/keys && printf '%s' '{b64}' | base64 -d > '/etc/ndctl/keys/{name}'"));
    }
    vm.ok("ndctl load-keys");
    vm.ok("ndctl disable-region all; ndctl disable-dimm nmem0 && ndctl enable-dimm nmem0 && ndctl enable-region all");
    assert_eq!(security(&mut vm), "unlocked");
    assert_eq!(read_marker(&mut vm, &marker), marker, "the data is back once the DIMM is unlocked");

    // Crypto erase: the media in the backing file is gone, the passphrase too.
    vm.ok("ndctl disable-region all && ndctl sanitize-dimm nmem0 --crypto-erase");
    assert_eq!(security(&mut vm), "disabled");
    assert!(!backing_has(&path, &marker), "crypto erase cleared the backing file");
    assert_eq!(vm.api("GET", "/events", None)["events"].as_array().map_or(0, |e| {
        e.iter().filter(|e| e["type"] == "media_erased").count()
    }), 1);

    // Overwrite: takes the time the host set, reported as "overwrite" meanwhile.
    write_marker(&mut vm, &marker);
    vm.api("PUT", "/dimms/0/security", Some(json!({ "overwrite_time_ms": 1500 })));
    vm.ok("ndctl disable-region all && ndctl sanitize-dimm nmem0 --overwrite");
    let during = host_security(&mut vm);
    assert_eq!(during["state"], "overwrite", "{during}");
    vm.ok("ndctl wait-overwrite nmem0");
    assert_eq!(security(&mut vm), "disabled");
    assert!(!backing_has(&path, &marker), "overwrite cleared the backing file");

    // Freeze: no security change is accepted until the next power-on.
    vm.ok("ndctl disable-region all && ndctl setup-passphrase nmem0 -k user:nvdimm-master");
    vm.ok("ndctl freeze-security nmem0");
    assert_eq!(dimm_field(&mut vm, "security_frozen"), json!(true));
    let (status, out) = vm.exec("ndctl remove-passphrase nmem0");
    assert_ne!(status, 0, "remove-passphrase on a frozen DIMM must fail: {out}");
    let host = host_security(&mut vm);
    assert_eq!((host["frozen"].as_bool(), host["passphrase_set"].as_bool()), (Some(true), Some(true)), "{host}");
    let wall = vm.stop();
    println!("[security] last boot {wall:?}");
}
