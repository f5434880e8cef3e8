//! The map of a mixed platform: DIMMs 0 and 1 in a 2-way set with 4 KiB lines, DIMM 2
//! on its own; checked directly and through the root `_DSM` and the NFIT.

use super::*;
use crate::config::{DimmConfig, PersistenceDomain, MIB};
use crate::dsm::ROOT_UUID;
use crate::dsm_root::{ARS_START, ARS_STATUS, CLEAR_ERROR, INJECT_ERROR, INJECT_STATUS, TRANSLATE_SPA};
use crate::mailbox::DsmRequest;
use crate::nfit::{self, split_structures};
use crate::NvdimmPlatform;

const SIZE: u64 = 64 * MIB;
const LINE: u64 = 4096;
const BASE: u64 = 4 << 30;

fn mixed_config() -> PlatformConfig {
    let dimms = (0..3).map(|i| DimmConfig::with_defaults(i, format!("/nonexistent/{i}").into(), SIZE)).collect();
    let config = PlatformConfig::new(dimms, PersistenceDomain::CpuCache).unwrap();
    config.with_interleave_sets(&["dimms=0,1,line=4K".to_string()]).unwrap()
}

fn mixed() -> NvdimmPlatform {
    let config = mixed_config();
    let layout = PlatformLayout::example(&config);
    NvdimmPlatform::ephemeral(config, layout).unwrap()
}

fn root_call(p: &mut NvdimmPlatform, function: u32, input: Vec<u8>) -> Vec<u8> {
    p.call_dsm(&DsmRequest { handle: 0, uuid: ROOT_UUID, function, revision: 1, input })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn a_set_is_one_window_stored_back_to_back() {
    let p = mixed();
    let map = p.spa_map();
    let w = map.windows();
    assert_eq!(w.len(), 2);
    assert_eq!((w[0].base, w[0].len, w[0].members.clone(), w[0].set), (BASE, 2 * SIZE, vec![0, 1], Some(0)));
    assert_eq!((w[1].members.clone(), w[1].range_index, w[1].set), (vec![2], 2, None));
    // Members back to back in way order, the single DIMM on the next 1 GiB boundary.
    let bases: Vec<u64> = p.layout().dimms.iter().map(|d| d.spa_base).collect();
    assert_eq!(bases, vec![BASE, BASE + SIZE, BASE + GIB_]);
    assert_eq!(map.storage_of(BASE + SIZE + 5), Some((1, 5)));
    assert!(!map.is_identity());
}

const GIB_: u64 = 1 << 30;

#[test]
fn lines_alternate_between_the_members() {
    let p = mixed();
    let map = p.spa_map();
    assert_eq!(map.locate_byte(BASE + 10), Some((0, 10)));
    assert_eq!(map.locate_byte(BASE + LINE + 10), Some((1, 10)));
    assert_eq!(map.locate_byte(BASE + 2 * LINE), Some((0, LINE)));
    assert_eq!(map.spa_of(1, LINE + 1), BASE + 3 * LINE + 1);
    assert_eq!(map.contiguous_from(BASE + LINE + 10), Some(LINE - 10));
    assert_eq!(map.locate_byte(BASE + GIB_ + 7), Some((2, 7)));
    assert_eq!(map.contiguous_from(BASE + GIB_ + 7), Some(SIZE - 7));
    let spans = map.dimm_spans(BASE + LINE / 2, 2 * LINE).unwrap();
    assert_eq!(
        spans,
        vec![DimmSpan { dimm: 0, offset: LINE / 2, len: LINE }, DimmSpan { dimm: 1, offset: 0, len: LINE }]
    );
    assert_eq!(map.dimm_spans(BASE + 2 * SIZE - 1, 2), None, "straddles the set's end");
}

#[test]
fn storage_poison_follows_where_the_bytes_are_stored() {
    let mut p = mixed();
    // DIMM 1's second line is system line 3 of the set: stored in DIMM 0's file at 3 lines.
    p.add_poison(1, LINE, 512).unwrap();
    p.add_poison(2, 8192, 4096).unwrap();
    let stored = p.storage_poison();
    assert_eq!(stored[0].iter().collect::<Vec<_>>(), vec![(3 * LINE, 512)]);
    assert!(stored[1].is_empty());
    assert_eq!(stored[2].iter().collect::<Vec<_>>(), vec![(8192, 4096)]);
    // A range past the middle of the set is stored in the second member's file.
    p.add_poison(0, SIZE / 2 + 100, 10).unwrap();
    let stored = p.storage_poison();
    assert_eq!(stored[1].iter().collect::<Vec<_>>(), vec![(100, 10)]);
}

#[test]
fn ars_reports_each_members_poison_at_its_system_address() {
    let mut p = mixed();
    p.add_poison(1, 0, 2 * LINE).unwrap();
    p.add_poison(0, 100, 50).unwrap();
    let mut start = Vec::new();
    start.extend(BASE.to_le_bytes());
    start.extend((2 * SIZE).to_le_bytes());
    start.extend(2u16.to_le_bytes());
    start.extend([1 << 1, 0, 0, 0, 0, 0]);
    assert_eq!(u32_at(&root_call(&mut p, ARS_START, start), 0), 0);
    let status = root_call(&mut p, ARS_STATUS, Vec::new());
    assert_eq!(u32_at(&status, 0), 0);
    let count = u32_at(&status, 44) as usize;
    let records: Vec<(u32, u64, u64)> = (0..count)
        .map(|i| 48 + 24 * i)
        .map(|at| (u32_at(&status, at), u64_at(&status, at + 8), u64_at(&status, at + 16)))
        .collect();
    let (h0, h1) = (p.dimms()[0].handle(), p.dimms()[1].handle());
    assert_eq!(
        records,
        vec![(h0, BASE + 100, 50), (h1, BASE + LINE, LINE), (h1, BASE + 3 * LINE, LINE)]
    );
}

#[test]
fn guest_injection_and_clear_span_the_members() {
    let mut p = mixed();
    let mut inject = Vec::new();
    inject.extend((BASE + LINE - 256).to_le_bytes());
    inject.extend(512u64.to_le_bytes());
    inject.push(0);
    assert_eq!(u32_at(&root_call(&mut p, INJECT_ERROR, inject), 0), 0);
    assert_eq!(p.poison_ranges(0).unwrap(), vec![(LINE - 256, 256)]);
    assert_eq!(p.poison_ranges(1).unwrap(), vec![(0, 256)]);
    let status = root_call(&mut p, INJECT_STATUS, Vec::new());
    assert_eq!(u32_at(&status, 4), 2);
    assert_eq!((u64_at(&status, 8), u64_at(&status, 16)), (BASE + LINE - 256, 256));
    assert_eq!((u64_at(&status, 24), u64_at(&status, 32)), (BASE + LINE, 256));
    let mut clear = Vec::new();
    clear.extend((BASE + LINE - 256).to_le_bytes());
    clear.extend(512u64.to_le_bytes());
    let out = root_call(&mut p, CLEAR_ERROR, clear);
    assert_eq!((u32_at(&out, 0), u64_at(&out, 8)), (0, 512));
    assert!(p.poison_ranges(0).unwrap().is_empty() && p.poison_ranges(1).unwrap().is_empty());
}

#[test]
fn translate_spa_names_the_member_and_its_offset() {
    let mut p = mixed();
    let out = root_call(&mut p, TRANSLATE_SPA, (BASE + 3 * LINE + 8).to_le_bytes().to_vec());
    assert_eq!(u32_at(&out, 0), 0);
    assert_eq!(u64_at(&out, 8), LINE - 8, "translated length runs to the line's end");
    assert_eq!(u32_at(&out, 16), 1);
    assert_eq!(u32_at(&out, 20), p.dimms()[1].handle());
    assert_eq!(u64_at(&out, 28), LINE + 8);
    let host = p.add_poison_spa(BASE + LINE - 8, 16).unwrap();
    assert_eq!(host, vec![DimmSpan { dimm: 0, offset: LINE - 8, len: 8 }, DimmSpan { dimm: 1, offset: 0, len: 8 }]);
}

#[test]
fn nfit_describes_the_set_with_interleave_structures() {
    let config = mixed_config();
    let layout = PlatformLayout::example(&config);
    let body = nfit::structures(&config, &layout);
    let parts = split_structures(&body);
    let kinds: Vec<u16> = parts.iter().map(|p| p.0).collect();
    // Set: SPA, (memdev, interleave, DCR, flush) x 2; then DIMM 2: SPA, memdev, DCR, flush; caps.
    assert_eq!(kinds, vec![0, 1, 2, 4, 6, 1, 2, 4, 6, 0, 1, 4, 6, 7]);
    let spa = parts[0].1;
    assert_eq!((u64_at(spa, 32), u64_at(spa, 40)), (BASE, 2 * SIZE));
    let memdevs: Vec<&[u8]> = parts.iter().filter(|p| p.0 == 1).map(|p| p.1).collect();
    let field16 = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    // range index, region offset, interleave index, ways.
    assert_eq!((field16(memdevs[0], 12), u64_at(memdevs[0], 24), field16(memdevs[0], 40), field16(memdevs[0], 42)), (1, 0, 1, 2));
    assert_eq!((field16(memdevs[1], 12), u64_at(memdevs[1], 24), field16(memdevs[1], 40), field16(memdevs[1], 42)), (1, LINE, 2, 2));
    assert_eq!((field16(memdevs[2], 12), field16(memdevs[2], 40), field16(memdevs[2], 42)), (2, 0, 1));
    let idt = parts[6].1;
    assert_eq!(idt.len(), nfit::INTERLEAVE_LEN);
    // index 2 (DIMM 1), one line of 4 KiB at line offset 1.
    assert_eq!((field16(idt, 4), u32_at(idt, 8), u32_at(idt, 12), u32_at(idt, 16)), (2, 1, 4096, 1));
}

#[test]
fn a_dimm_in_two_sets_or_a_set_out_of_place_is_refused() {
    let config = mixed_config();
    let twice = config.clone().with_interleave_sets(&["dimms=1,2".to_string()]).unwrap_err();
    assert!(twice.to_string().contains("nvdimm #1 is in interleave sets #0 and #1"), "{twice}");
    let mut layout = PlatformLayout::example(&config);
    layout.dimms[1].spa_base += 2 << 20;
    let err = layout.validate(&config).unwrap_err().to_string();
    assert!(err.contains("must follow the set's previous DIMM"), "{err}");
}
