//! Interleave sets (issue 11) under the real kernel and ndctl: one region across the
//! set's DIMMs beside a DIMM of its own; host poison in every member lands on the
//! region sectors the interleave arithmetic gives (computed here independently of the
//! device model); a namespace on the set survives a restart through its labels.

use serde_json::json;

use super::{as_list, boot, parse_badblocks, Guest, Vm, Work, MIB, SECTOR};

/// Every DIMM of a set; the DIMM outside it has another size so regions tell apart.
const MEMBER_SIZE: u64 = 64 * MIB;
const SINGLE_SIZE: u64 = 96 * MIB;
const LINE: u64 = 4096;

/// The set's region offset of byte `offset` of way `way` (ACPI interleave: lines dealt
/// round-robin to the ways).
fn region_offset(ways: u64, way: u64, offset: u64) -> u64 {
    ((offset / LINE) * ways + way) * LINE + offset % LINE
}

/// Sector ranges `(first, count)` covering DIMM range `[offset, offset + len)` of way
/// `way`, one per line it touches, as Linux's badblocks rounds them (out to sectors).
fn sectors_of(ways: u64, way: u64, offset: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = offset;
    while at < offset + len {
        let piece = ((at / LINE + 1) * LINE).min(offset + len) - at;
        let start = region_offset(ways, way, at);
        let (first, end) = (start / SECTOR, (start + piece).div_ceil(SECTOR));
        out.push((first, end - first));
        at += piece;
    }
    out
}

/// Sorts and joins touching ranges, as the kernel's badblocks list keeps them.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, n) in ranges {
        match out.last_mut() {
            Some((ls, ln)) if *ls + *ln >= s => *ln = (*ln).max(s + n - *ls),
            _ => out.push((s, n)),
        }
    }
    out
}

/// `--nvdimm` options and the `--interleave-set` for `ways` members (handles 1..) and
/// one DIMM of its own (handle 9).
fn platform(work: &Work, ways: u64, label_size: &str) -> (Vec<String>, Vec<String>) {
    let spec = |name: &str, size: u64, handle: u64| {
        let path = work.dimm(name, size);
        format!("path={},size={}M,label-size={label_size},handle={handle}", path.display(), size / MIB)
    };
    let mut dimms: Vec<String> = (0..ways).map(|i| spec(&format!("m{i}.img"), MEMBER_SIZE, i + 1)).collect();
    dimms.push(spec("single.img", SINGLE_SIZE, 9));
    let members: Vec<String> = (0..ways).map(|i| i.to_string()).collect();
    let set = vec!["--interleave-set".to_string(), format!("dimms={},line=4K", members.join(","))];
    (dimms, set)
}

/// The region whose size is `size`: its name (`regionN`).
fn region_of_size(vm: &mut Vm, size: u64) -> String {
    let regions = vm.json("ndctl list -R");
    as_list(&regions)
        .into_iter()
        .find(|r| r["size"].as_u64() == Some(size))
        .and_then(|r| r["dev"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no region of {size:#x} bytes: {regions}"))
}

/// The set's region: `ways` mappings, each on the nmem of the member at its position.
fn check_set_region(vm: &mut Vm, ways: u64) -> String {
    let region = region_of_size(vm, ways * MEMBER_SIZE);
    let sys = format!("/sys/bus/nd/devices/{region}");
    let count = vm.ok(&format!("cat {sys}/mappings"));
    assert_eq!(count.trim(), ways.to_string(), "{region}: mappings");
    for position in 0..ways {
        // mappingN: "nmemX,dpa,length,position", sorted by Linux; find the one at `position`.
        let lines = vm.ok(&format!("cat {sys}/mapping[0-9]*"));
        let line = lines
            .lines()
            .find(|l| l.trim().rsplit(',').next() == Some(&position.to_string()))
            .unwrap_or_else(|| panic!("{region}: no mapping at position {position}: {lines}"));
        let nmem = line.split(',').next().unwrap_or_default().to_string();
        let handle = vm.ok(&format!("cat /sys/bus/nd/devices/{nmem}/nfit/handle"));
        assert_eq!(hex_or_dec(handle.trim()), position + 1, "{region} position {position} is {nmem} ({line})");
    }
    region
}

fn hex_or_dec(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap_or_else(|_| panic!("not a number: {s}")),
        None => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
    }
}

fn blockdev_of_region(vm: &mut Vm, region: &str) -> String {
    let ns = vm.json(&format!("ndctl list -N -r {region}"));
    as_list(&ns)
        .first()
        .and_then(|n| n["blockdev"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no namespace with a block device on {region}: {ns}"))
}

/// Host poison in every member of a `ways`-way set (and in the DIMM beside it), found by
/// the guest's scrub at exactly the region sectors the interleave gives; a `spa` range
/// across a line boundary lands on two members.
pub fn interleave_poison_in_each_dimm(guest: impl Into<Guest>, ways: u64) {
    let work = Work::new(&format!("interleave{ways}"), guest);
    // No labels: each region is one raw namespace from region offset 0, so sectors are
    // region offsets / 512.
    let (dimms, set) = platform(&work, ways, "0");
    let extra: Vec<&str> = set.iter().map(String::as_str).collect();
    let mut vm = boot(&work, &dimms, &extra);
    let region = check_set_region(&mut vm, ways);
    let dev = blockdev_of_region(&mut vm, &region);
    let single = region_of_size(&mut vm, SINGLE_SIZE);
    let single_dev = blockdev_of_region(&mut vm, &single);

    let mut want = Vec::new();
    for way in 0..ways {
        // Each member once inside a line, member 0 also across one of its line ends.
        let offset = (way + 1) * MIB + 512 * (way + 1);
        vm.api("POST", "/poison", Some(json!({ "dimm": way, "offset": offset, "length": 512 })));
        want.extend(sectors_of(ways, way, offset, 512));
    }
    let across = 3 * MIB - 256;
    vm.api("POST", "/poison", Some(json!({ "dimm": 0, "offset": across, "length": 512 })));
    want.extend(sectors_of(ways, 0, across, 512));
    // By system address: the last 512 bytes of line 5 and the first of line 6.
    let base = vm.api("GET", "/dimms/0", None)["spa_base"].as_u64().expect("spa_base");
    let by_spa = vm.api("POST", "/poison", Some(json!({ "spa": base + 6 * LINE - 512, "length": 1024 })));
    let spread = by_spa["spread"].as_array().map_or(0, Vec::len);
    assert_eq!(spread, 2, "a spa range across a line boundary lands on two DIMMs: {by_spa}");
    assert_eq!(by_spa["dimm"].as_u64(), Some(5 % ways), "line 5 is on way 5 mod {ways}: {by_spa}");
    want.extend([((6 * LINE - 512) / SECTOR, 2)]);
    vm.api("POST", "/poison", Some(json!({ "dimm": ways, "offset": 8 * MIB, "length": 4096 })));

    vm.ok("ndctl start-scrub && ndctl wait-scrub");
    let got = parse_badblocks(&vm.ok(&format!("cat /sys/block/{dev}/badblocks")));
    assert_eq!(got, merged(want), "/sys/block/{dev}/badblocks of the {ways}-way set vs the interleave arithmetic");
    let got = parse_badblocks(&vm.ok(&format!("cat /sys/block/{single_dev}/badblocks")));
    assert_eq!(got, vec![(8 * MIB / SECTOR, 8)], "the DIMM beside the set");
    let wall = vm.stop();
    println!("[interleave{ways}] total {wall:?}");
}

pub fn s11_interleave_4way_poison_in_each_dimm(guest: impl Into<Guest>) {
    interleave_poison_in_each_dimm(guest, 4);
}

/// An fsdax namespace across a 2-way set: labels written by ndctl on both members carry
/// Linux's interleave-set cookie, so after a restart the namespace, its file system and
/// the data on it come back.
pub fn s11_interleave_2way_namespace_survives_restart(guest: impl Into<Guest>) {
    let work = Work::new("interleave-labels", guest);
    let (dimms, set) = platform(&work, 2, "128K");
    let extra: Vec<&str> = set.iter().map(String::as_str).collect();
    let marker = format!("vnvdimm-interleave-marker-{}", std::process::id());

    let mut vm = boot(&work, &dimms, &extra);
    vm.ok("ndctl disable-region all && ndctl init-labels all && ndctl enable-region all");
    let region = check_set_region(&mut vm, 2);
    let iset = vm.ok(&format!("cat /sys/bus/nd/devices/{region}/set_cookie"));
    vm.ok(&format!("ndctl create-namespace -m fsdax -r {region}"));
    let dev = blockdev_of_region(&mut vm, &region);
    vm.ok(&format!("mkfs.ext4 -F -q -b 4096 /dev/{dev}"));
    vm.ok(&format!(
        "mkdir -p /mnt/d && mount -t ext4 -o dax /dev/{dev} /mnt/d && printf '%s\\n' {marker} > /mnt/d/file && sync && umount /mnt/d"
    ));
    let wall1 = vm.stop();

    let mut vm = boot(&work, &dimms, &extra);
    let region = check_set_region(&mut vm, 2);
    let iset2 = vm.ok(&format!("cat /sys/bus/nd/devices/{region}/set_cookie"));
    assert!(hex_or_dec(iset.trim()) != 0, "{region} has an interleave-set cookie: {iset}");
    assert_eq!(iset.trim(), iset2.trim(), "the interleave-set cookie is the same on every boot");
    let ns = vm.json(&format!("ndctl list -N -r {region}"));
    let ns = as_list(&ns);
    assert_eq!(ns.len(), 1, "the fsdax namespace comes back from the labels: {ns:?}");
    assert_eq!(ns[0]["mode"], "fsdax", "{ns:?}");
    assert_eq!(ns[0]["size"].as_u64().map(|s| s > MEMBER_SIZE), Some(true), "spans both DIMMs: {ns:?}");
    let dev = blockdev_of_region(&mut vm, &region);
    let got = vm.ok(&format!("mkdir -p /mnt/d && mount -t ext4 -o dax /dev/{dev} /mnt/d && cat /mnt/d/file && umount /mnt/d"));
    assert_eq!(got.trim(), marker, "file content after the restart");
    let wall2 = vm.stop();
    println!("[interleave-labels] boot 1 {wall1:?}, boot 2 {wall2:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_follow_the_lines() {
        // Way 1 of 2, offset 0: region line 1.
        assert_eq!(sectors_of(2, 1, 0, 512), vec![(8, 1)]);
        // Way 0 of 4 across its first line end: region lines 0 and 4.
        assert_eq!(sectors_of(4, 0, LINE - 256, 512), vec![(7, 1), (32, 1)]);
        assert_eq!(merged(vec![(8, 1), (7, 1), (20, 2), (21, 3)]), vec![(7, 2), (20, 4)]);
    }
}
