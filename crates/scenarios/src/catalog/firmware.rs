//! Firmware update and activation (issue 11) with the real kernel and ndctl: the image
//! travels in chunks through `ndctl update-firmware`, is checked and staged; the host
//! provokes a bad image, a busy DIMM and a failed activation; `ndctl activate-firmware`
//! runs the staged image live; a staged image runs after a restart.

use serde_json::{json, Value};
use vnvdimm_agent::codec::base64_encode;

use super::{as_list, boot, Guest, Vm, Work};
use nvdimm_model::firmware::{build_image, FACTORY_VERSION};

const V2: u64 = 0x0002_0000_0000_0001;
const V3: u64 = 0x0003_0000_0000_0001;
/// Base64 characters per guest command while the image is copied in.
const B64_CHUNK: usize = 2000;

/// The firmware JSON `ndctl list -DF` shows for nmem0.
fn listed_firmware(vm: &mut Vm) -> Value {
    let listing = vm.json("ndctl list -DF -d nmem0");
    let dimm = as_list(&listing).into_iter().next().unwrap_or_else(|| panic!("no nmem0: {listing}"));
    dimm.get("firmware").cloned().unwrap_or_else(|| panic!("no firmware in {dimm}"))
}

/// A version as ndctl prints it: a number, or a "0x..." string.
fn version(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        _ => None,
    }
}

fn copy_in(vm: &mut Vm, path: &str, bytes: &[u8]) {
    let b64 = base64_encode(bytes);
    vm.ok(&format!("rm -f {path}.b64"));
    for chunk in b64.as_bytes().chunks(B64_CHUNK) {
        vm.ok(&format!("printf '%s' '{}' >> {path}.b64", std::str::from_utf8(chunk).unwrap()));
    }
    vm.ok(&format!("base64 -d {path}.b64 > {path} && rm {path}.b64"));
}

fn host_firmware(vm: &mut Vm) -> Value {
    vm.api("GET", "/dimms/0/firmware", None)
}

pub fn s13_firmware_update_and_activation(guest: impl Into<Guest>) {
    let work = Work::new("firmware", guest);
    let path = work.dimm("a.img", 256 << 20);
    let dimms = [format!("path={},size=256M,label-size=0,handle=1", path.display())];

    let mut vm = boot(&work, &dimms, &[]);
    vm.ok("ndctl wait-scrub");
    assert_eq!(version(&listed_firmware(&mut vm)["current_version"]), Some(FACTORY_VERSION));
    copy_in(&mut vm, "/tmp/v2.bin", &build_image(V2, &vec![0x42; 12 * 1024]));
    copy_in(&mut vm, "/tmp/v3.bin", &build_image(V3, &vec![0x43; 6 * 1024]));
    let mut corrupt = build_image(V3, &vec![0x44; 1024]);
    corrupt[20] ^= 0xff;
    copy_in(&mut vm, "/tmp/corrupt.bin", &corrupt);

    // A corrupt image and host-provoked failures are refused the way ndctl reports them.
    let (status, out) = vm.exec("ndctl update-firmware -f /tmp/corrupt.bin nmem0");
    assert_ne!(status, 0, "a corrupt image must be refused: {out}");
    vm.api("PUT", "/dimms/0/firmware", Some(json!({ "fail_next": "bad_image" })));
    let (status, out) = vm.exec("ndctl update-firmware -f /tmp/v2.bin nmem0");
    assert_ne!(status, 0, "the host's bad_image makes a good image fail: {out}");
    vm.api("PUT", "/dimms/0/firmware", Some(json!({ "fail_next": "busy" })));
    let (status, out) = vm.exec("ndctl update-firmware -f /tmp/v2.bin nmem0");
    assert_ne!(status, 0, "the host's busy refuses the start: {out}");
    let host = host_firmware(&mut vm);
    assert_eq!((host["staged_version"].clone(), host["pending_fault"].clone()), (Value::Null, Value::Null), "{host}");

    // The real update: sent in chunks, verified, staged (and armed by ndctl).
    vm.api("PUT", "/dimms/0/firmware", Some(json!({ "verify_time_ms": 500 })));
    vm.ok("ndctl update-firmware -f /tmp/v2.bin nmem0");
    let fw = listed_firmware(&mut vm);
    assert_eq!(version(&fw["next_version"]), Some(V2), "{fw}");
    assert_eq!(host_firmware(&mut vm)["staged_version"].as_u64(), Some(V2));

    // Live activation.
    vm.ok("ndctl activate-firmware ndbus0");
    let fw = listed_firmware(&mut vm);
    assert_eq!(version(&fw["current_version"]), Some(V2), "{fw}");
    let host = host_firmware(&mut vm);
    assert_eq!((host["running_version"].as_u64(), host["last_activation"].as_str()), (Some(V2), Some("success")), "{host}");

    // A failed activation keeps the image staged; it runs after the restart instead.
    vm.ok("ndctl update-firmware -f /tmp/v3.bin nmem0");
    vm.api("PUT", "/dimms/0/firmware", Some(json!({ "fail_next": "activation" })));
    let _ = vm.exec("ndctl activate-firmware ndbus0");
    let host = host_firmware(&mut vm);
    assert_eq!(
        (host["running_version"].as_u64(), host["staged_version"].as_u64(), host["last_activation"].as_str()),
        (Some(V2), Some(V3), Some("error")),
        "{host}"
    );
    assert_eq!(vm.ok("cat /sys/bus/nd/devices/nmem0/firmware/result").trim(), "fail");
    vm.stop();

    let mut vm = boot(&work, &dimms, &[]);
    let fw = listed_firmware(&mut vm);
    assert_eq!(version(&fw["current_version"]), Some(V3), "the staged image runs after the restart: {fw}");
    let wall = vm.stop();
    println!("[firmware] last boot {wall:?}");
}
