//! NFIT table generation (ACPI 6.x section 5.2.25).
//!
//! One SPA range per system-address range of the [`SpaMap`] (a DIMM, or an interleave
//! set); per DIMM one memory-device map, an interleave structure when it is in a set,
//! one control region and a flush hint structure when the DIMM has hints; and a
//! platform capabilities structure when the persistence domain is known. Each SPA range names its own proximity domain (see
//! [`proximity_domain`]); the machine's SRAT must describe the same domains. The output
//! depends only on the configuration and the layout, so it is byte-identical on every
//! run (golden files rely on it). Each sub-structure is a `#[repr(C, packed)]` type whose
//! size is checked at compile time against the length Linux insists on.

use acpi_tables::sdt::Sdt;
use zerocopy::byteorder::{self, BE, LE};
use zerocopy::{Immutable, IntoBytes};

use crate::config::{DimmConfig, DimmIdentity, PersistenceDomain, PlatformConfig};
use crate::layout::{DimmPlacement, PlatformLayout};
use crate::spa_map::{SpaMap, SpaWindow};

pub const SIGNATURE: [u8; 4] = *b"NFIT";
pub const REVISION: u8 = 1;
pub const OEM_ID: [u8; 6] = *b"VNVDMM";
pub const OEM_TABLE_ID: [u8; 8] = *b"VNVDIMM ";
pub const OEM_REVISION: u32 = 1;
/// SDT header plus the NFIT's 4 reserved bytes; sub-structures start here.
pub const HEADER_LEN: usize = 40;

pub const TYPE_SPA: u16 = 0;
pub const TYPE_MEMDEV: u16 = 1;
pub const TYPE_INTERLEAVE: u16 = 2;
pub const TYPE_DCR: u16 = 4;
pub const TYPE_FLUSH_HINT: u16 = 6;
pub const TYPE_CAPABILITIES: u16 = 7;

/// Linux rejects an SPA range whose length is not exactly this (without a location cookie).
pub const SPA_LEN: usize = 56;
/// Linux rejects a memory-device map whose length is not exactly this.
pub const MEMDEV_LEN: usize = 48;
/// Full control region; Linux reads only the first 32 bytes when there are no block windows.
pub const DCR_LEN: usize = 80;
/// An interleave structure with one line offset; old kernels reject shorter ones.
pub const INTERLEAVE_LEN: usize = 20;
pub const FLUSH_HINT_HEADER_LEN: usize = 16;
pub const CAPABILITIES_LEN: usize = 16;

/// Persistent memory range type 66F0D379-B4F3-4074-AC43-0D3318B78CDB as stored in the table.
pub const PMEM_GUID: [u8; 16] = [
    0x79, 0xd3, 0xf0, 0x66, 0xf3, 0xb4, 0x74, 0x40, 0xac, 0x43, 0x0d, 0x33, 0x18, 0xb7, 0x8c, 0xdb,
];
/// EFI_MEMORY_WB | EFI_MEMORY_NV: cacheable write-back, non-volatile (what QEMU and
/// real firmware publish for persistent memory).
pub const PMEM_MAPPING_ATTRIBUTE: u64 = 0x8 | 0x8000;
/// Byte-addressable, non-energy-backed interface (what Intel Optane DIMMs publish).
pub const FORMAT_INTERFACE_CODE: u16 = 0x0301;
/// SPA range flags bit 1: the proximity domain field is valid. Without it Linux gives the
/// region no NUMA node of its own (`target_node` -1, so kmem refuses the namespace).
pub const SPA_FLAG_PROXIMITY_VALID: u16 = 1 << 1;
/// The proximity domain of the CPUs and of all guest RAM, on both backends.
pub const HOST_PROXIMITY_DOMAIN: u32 = 0;
/// Control region valid-fields bit 0: manufacturing location and date are valid.
pub const DCR_MFG_INFO_VALID: u8 = 1;

pub const CAP_CPU_CACHE: u32 = 1 << 0;
pub const CAP_MEMORY_CONTROLLER: u32 = 1 << 1;

type U16 = byteorder::U16<LE>;
type U32 = byteorder::U32<LE>;
type U64 = byteorder::U64<LE>;
/// The identity fields Linux reads with be16_to_cpu/be32_to_cpu (see [`ControlRegion`]).
type Be16 = byteorder::U16<BE>;
type Be32 = byteorder::U32<BE>;

/// Type and length, the first four bytes of every NFIT sub-structure.
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default, Clone, Copy)]
struct StructureHeader {
    kind: U16,
    length: U16,
}

impl StructureHeader {
    fn new(kind: u16, length: usize) -> Self {
        StructureHeader { kind: kind.into(), length: (length as u16).into() }
    }
}

/// System Physical Address Range structure (ACPI 6.4 table 5.133).
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct SpaRange {
    header: StructureHeader,
    range_index: U16,
    flags: U16,
    _reserved: U32,
    proximity_domain: U32,
    range_type: [u8; 16],
    base: U64,
    length: U64,
    mapping_attribute: U64,
}

/// NVDIMM Region Mapping structure, the "memory device map" (table 5.134).
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct MemoryDeviceMap {
    header: StructureHeader,
    device_handle: U32,
    physical_id: U16,
    region_id: U16,
    range_index: U16,
    control_region_index: U16,
    region_size: U64,
    region_offset: U64,
    region_dpa: U64,
    interleave_index: U16,
    interleave_ways: U16,
    flags: U16,
    _reserved: U16,
}

/// Interleave structure (table 5.135) describing one line per interleave repeat: a
/// member of an n-way set holds line `way` of every n lines.
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct Interleave {
    header: StructureHeader,
    interleave_index: U16,
    _reserved: U16,
    line_count: U32,
    line_size: U32,
    line_offset: U32,
}

/// NVDIMM Control Region structure (table 5.137). The identity fields are big-endian:
/// Linux reads vendor, device, revision, the three subsystem ids, the manufacturing
/// date and the serial number with be16_to_cpu/be32_to_cpu (core.c *_show and
/// acpi_nfit_add_dimm), so the id Linux and ndctl print is exactly
/// `DimmIdentity::ndctl_id()`. The format interface code is read le16.
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct ControlRegion {
    header: StructureHeader,
    control_region_index: U16,
    vendor_id: Be16,
    device_id: Be16,
    revision_id: Be16,
    subsystem_vendor_id: Be16,
    subsystem_device_id: Be16,
    subsystem_revision_id: Be16,
    valid_fields: u8,
    manufacturing_location: u8,
    manufacturing_date: Be16,
    _reserved: [u8; 2],
    serial_number: Be32,
    format_interface_code: U16,
    /// No block control windows: the rest of the structure stays zero.
    block_control_windows: U16,
    block_control_window_size: U64,
    command_register_offset: U64,
    command_register_size: U64,
    status_register_offset: U64,
    status_register_size: U64,
    flags: U16,
    _reserved2: [u8; 6],
}

/// Flush Hint Address structure (table 5.139) without its addresses, which follow it.
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct FlushHintHeader {
    header: StructureHeader,
    device_handle: U32,
    hint_count: U16,
    _reserved: [u8; 6],
}

/// Platform Capabilities structure (table 5.140).
#[repr(C, packed)]
#[derive(IntoBytes, Immutable, Default)]
struct PlatformCapabilities {
    header: StructureHeader,
    highest_valid_bit: u8,
    _reserved: [u8; 3],
    capabilities: U32,
    _reserved2: U32,
}

// Linux checks these lengths exactly (see the constants above).
const _: () = assert!(std::mem::size_of::<SpaRange>() == SPA_LEN);
const _: () = assert!(std::mem::size_of::<MemoryDeviceMap>() == MEMDEV_LEN);
const _: () = assert!(std::mem::size_of::<ControlRegion>() == DCR_LEN);
const _: () = assert!(std::mem::size_of::<Interleave>() == INTERLEAVE_LEN);
const _: () = assert!(std::mem::size_of::<FlushHintHeader>() == FLUSH_HINT_HEADER_LEN);
const _: () = assert!(std::mem::size_of::<PlatformCapabilities>() == CAPABILITIES_LEN);

/// SPA range, DCR and memdev indices of the DIMM at `index` (they must be non-zero).
pub fn range_index(index: usize) -> u16 {
    index as u16 + 1
}

/// Proximity domain of the SPA range of the DIMM at `index`: each DIMM in a domain of its
/// own after the CPUs' and RAM's domain 0, the layout of a platform whose persistent
/// memory is a separate memory target, and the NUMA node numbering of the QEMU TCG
/// backend (node `index + 1` holds DIMM `index`'s window). Linux maps the domain to a
/// node only through the SRAT, so the KVM machine's SRAT lists every window under this
/// domain (`vnvdimm_machine::acpi::srat`) and QEMU's does under TCG.
pub fn proximity_domain(index: usize) -> u32 {
    HOST_PROXIMITY_DOMAIN + index as u32 + 1
}

fn spa(window: &SpaWindow) -> Vec<u8> {
    SpaRange {
        header: StructureHeader::new(TYPE_SPA, SPA_LEN),
        range_index: window.range_index.into(),
        flags: SPA_FLAG_PROXIMITY_VALID.into(),
        proximity_domain: window.proximity_domain.into(),
        range_type: PMEM_GUID,
        base: window.base.into(),
        length: window.len.into(),
        mapping_attribute: PMEM_MAPPING_ATTRIBUTE.into(),
        ..Default::default()
    }
    .as_bytes()
    .to_vec()
}

/// The interleave structure index of DIMM `index` when it is in a set (non-zero).
pub fn interleave_index(index: usize) -> u16 {
    index as u16 + 1
}

/// DIMM `index`'s memory-device map into `window`, where it is way `way`. The region
/// offset (way x line) orders the set's DIMMs: Linux sorts the mappings by it for the
/// interleave-set cookie and each namespace label's position.
fn memdev(index: usize, dimm: &DimmConfig, window: &SpaWindow, way: usize) -> Vec<u8> {
    let interleaved = window.members.len() > 1;
    MemoryDeviceMap {
        header: StructureHeader::new(TYPE_MEMDEV, MEMDEV_LEN),
        device_handle: dimm.handle.into(),
        // Stands in for an SMBIOS type 17 handle.
        physical_id: (index as u16).into(),
        range_index: window.range_index.into(),
        control_region_index: range_index(index).into(),
        region_size: dimm.size.into(),
        region_offset: if interleaved { (way as u64 * window.line).into() } else { 0.into() },
        interleave_index: if interleaved { interleave_index(index).into() } else { 0.into() },
        interleave_ways: (window.members.len() as u16).into(),
        flags: dimm.memdev_flags.0.into(),
        ..Default::default()
    }
    .as_bytes()
    .to_vec()
}

fn interleave(index: usize, window: &SpaWindow, way: usize) -> Vec<u8> {
    Interleave {
        header: StructureHeader::new(TYPE_INTERLEAVE, INTERLEAVE_LEN),
        interleave_index: interleave_index(index).into(),
        line_count: 1.into(),
        line_size: (window.line as u32).into(),
        line_offset: (way as u32).into(),
        ..Default::default()
    }
    .as_bytes()
    .to_vec()
}

fn dcr(index: usize, id: &DimmIdentity) -> Vec<u8> {
    ControlRegion {
        header: StructureHeader::new(TYPE_DCR, DCR_LEN),
        control_region_index: range_index(index).into(),
        vendor_id: id.vendor_id.into(),
        device_id: id.device_id.into(),
        revision_id: id.revision_id.into(),
        subsystem_vendor_id: id.subsystem_vendor_id.into(),
        subsystem_device_id: id.subsystem_device_id.into(),
        subsystem_revision_id: id.subsystem_revision_id.into(),
        valid_fields: DCR_MFG_INFO_VALID,
        manufacturing_location: id.manufacturing_location,
        manufacturing_date: id.manufacturing_date.into(),
        serial_number: id.serial_number.into(),
        format_interface_code: FORMAT_INTERFACE_CODE.into(),
        ..Default::default()
    }
    .as_bytes()
    .to_vec()
}

fn flush_hint(dimm: &DimmConfig, place: &DimmPlacement) -> Option<Vec<u8>> {
    if place.flush_hints.is_empty() {
        return None;
    }
    let count = place.flush_hints.len();
    let header = FlushHintHeader {
        header: StructureHeader::new(TYPE_FLUSH_HINT, FLUSH_HINT_HEADER_LEN + 8 * count),
        device_handle: dimm.handle.into(),
        hint_count: (count as u16).into(),
        ..Default::default()
    };
    let mut bytes = header.as_bytes().to_vec();
    for &addr in &place.flush_hints {
        bytes.extend_from_slice(U64::new(addr).as_bytes());
    }
    Some(bytes)
}

/// (highest valid capability bit, capabilities) for a persistence domain; `None` when
/// nothing is published, which makes Linux hide `persistence_domain`.
pub fn capabilities(domain: PersistenceDomain) -> Option<(u8, u32)> {
    match domain {
        PersistenceDomain::CpuCache => Some((1, CAP_CPU_CACHE | CAP_MEMORY_CONTROLLER)),
        PersistenceDomain::MemoryController => Some((1, CAP_MEMORY_CONTROLLER)),
        PersistenceDomain::None => None,
    }
}

fn capabilities_record(domain: PersistenceDomain) -> Option<Vec<u8>> {
    let (highest, caps) = capabilities(domain)?;
    let record = PlatformCapabilities {
        header: StructureHeader::new(TYPE_CAPABILITIES, CAPABILITIES_LEN),
        highest_valid_bit: highest,
        capabilities: caps.into(),
        ..Default::default()
    };
    Some(record.as_bytes().to_vec())
}

/// The NFIT sub-structures without the table header: the NFIT body, and what `_FIT`
/// returns. Per system-address range (DIMM order, a set where its lowest-numbered DIMM
/// is): SPA, then per DIMM in way order memdev, interleave (in a set), DCR, flush hints;
/// then the platform capabilities. Without sets this is SPA, memdev, DCR, flush hints
/// per DIMM. Extra layout placements beyond the configured DIMMs are ignored.
pub fn structures(config: &PlatformConfig, layout: &PlatformLayout) -> Vec<u8> {
    let map = SpaMap::new(config, layout);
    let mut body = Vec::new();
    for window in map.windows() {
        body.extend(spa(window));
        for (way, &index) in window.members.iter().enumerate() {
            let (dimm, place) = (&config.dimms[index], &layout.dimms[index]);
            body.extend(memdev(index, dimm, window, way));
            if window.members.len() > 1 {
                body.extend(interleave(index, window, way));
            }
            body.extend(dcr(index, &dimm.identity));
            if let Some(hints) = flush_hint(dimm, place) {
                body.extend(hints);
            }
        }
    }
    if let Some(caps) = capabilities_record(config.persistence_domain) {
        body.extend(caps);
    }
    body
}

/// The complete NFIT (SDT header included, checksummed).
pub fn build(config: &PlatformConfig, layout: &PlatformLayout) -> Vec<u8> {
    let mut table = Sdt::new(
        SIGNATURE,
        HEADER_LEN as u32,
        REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    table.append_slice(&structures(config, layout));
    table.as_slice().to_vec()
}

/// The id Linux builds from a control region (`nfit/id`, ndctl's `"id"`), decoded the
/// way core.c does it. `None` if `dcr` is too short to be a control region.
pub fn linux_dimm_id(dcr: &[u8]) -> Option<String> {
    let be16 = |at: usize| Some(u16::from_be_bytes(dcr.get(at..at + 2)?.try_into().ok()?));
    let be32 = |at: usize| Some(u32::from_be_bytes(dcr.get(at..at + 4)?.try_into().ok()?));
    let vendor = be16(6)?;
    let serial = be32(24)?;
    if dcr.get(18)? & DCR_MFG_INFO_VALID != 0 {
        Some(format!(
            "{:04x}-{:02x}-{:04x}-{:08x}",
            vendor,
            dcr.get(19)?,
            be16(20)?,
            serial
        ))
    } else {
        Some(format!("{vendor:04x}-{serial:08x}"))
    }
}

/// Splits an NFIT body into (type, bytes) sub-structures, stopping at a malformed length.
pub fn split_structures(body: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_le_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_le_bytes([body[at + 2], body[at + 3]]));
        if len < 4 || at + len > body.len() {
            break;
        }
        out.push((kind, &body[at..at + len]));
        at += len;
    }
    out
}

#[cfg(test)]
mod tests;
