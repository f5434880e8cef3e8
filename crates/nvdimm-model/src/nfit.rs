//! NFIT table generation (ACPI 6.x section 5.2.25).
//!
//! One SPA range, one memory-device map and one control region per DIMM, a flush hint
//! structure when the DIMM has hints, and a platform capabilities structure when the
//! persistence domain is known. Each SPA range names its own proximity domain (see
//! [`proximity_domain`]); the machine's SRAT must describe the same domains. The output
//! depends only on the configuration and the layout, so it is byte-identical on every
//! run (golden files rely on it).

use acpi_tables::sdt::Sdt;

use crate::config::{DimmConfig, DimmIdentity, PersistenceDomain, PlatformConfig};
use crate::layout::{DimmPlacement, PlatformLayout};

pub const SIGNATURE: [u8; 4] = *b"NFIT";
pub const REVISION: u8 = 1;
pub const OEM_ID: [u8; 6] = *b"VNVDMM";
pub const OEM_TABLE_ID: [u8; 8] = *b"VNVDIMM ";
pub const OEM_REVISION: u32 = 1;
/// SDT header plus the NFIT's 4 reserved bytes; sub-structures start here.
pub const HEADER_LEN: usize = 40;

pub const TYPE_SPA: u16 = 0;
pub const TYPE_MEMDEV: u16 = 1;
pub const TYPE_DCR: u16 = 4;
pub const TYPE_FLUSH_HINT: u16 = 6;
pub const TYPE_CAPABILITIES: u16 = 7;

/// Linux rejects an SPA range whose length is not exactly this (without a location cookie).
pub const SPA_LEN: usize = 56;
/// Linux rejects a memory-device map whose length is not exactly this.
pub const MEMDEV_LEN: usize = 48;
/// Full control region; Linux reads only the first 32 bytes when there are no block windows.
pub const DCR_LEN: usize = 80;
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

/// Little-endian writer for one sub-structure of fixed length.
struct Record(Vec<u8>);

impl Record {
    fn new(kind: u16, len: usize) -> Self {
        let mut bytes = vec![0; len];
        bytes[0..2].copy_from_slice(&kind.to_le_bytes());
        bytes[2..4].copy_from_slice(&(len as u16).to_le_bytes());
        Record(bytes)
    }
    fn put(&mut self, at: usize, value: &[u8]) -> &mut Self {
        self.0[at..at + value.len()].copy_from_slice(value);
        self
    }
    fn u8(&mut self, at: usize, v: u8) -> &mut Self {
        self.put(at, &[v])
    }
    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.put(at, &v.to_le_bytes())
    }
    /// Identity fields that Linux reads with be16_to_cpu (see `dcr`).
    fn be16(&mut self, at: usize, v: u16) -> &mut Self {
        self.put(at, &v.to_be_bytes())
    }
    fn be32(&mut self, at: usize, v: u32) -> &mut Self {
        self.put(at, &v.to_be_bytes())
    }
}

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

fn spa(index: usize, dimm: &DimmConfig, place: &DimmPlacement) -> Vec<u8> {
    let mut r = Record::new(TYPE_SPA, SPA_LEN);
    r.u16(4, range_index(index))
        .u16(6, SPA_FLAG_PROXIMITY_VALID)
        .u32(12, proximity_domain(index))
        .put(16, &PMEM_GUID)
        .u64(32, place.spa_base)
        .u64(40, dimm.size)
        .u64(48, PMEM_MAPPING_ATTRIBUTE);
    r.0
}

fn memdev(index: usize, dimm: &DimmConfig) -> Vec<u8> {
    let mut r = Record::new(TYPE_MEMDEV, MEMDEV_LEN);
    r.u32(4, dimm.handle)
        .u16(8, index as u16) // physical id: stands in for an SMBIOS type 17 handle
        .u16(10, 0) // region id
        .u16(12, range_index(index))
        .u16(14, range_index(index))
        .u64(16, dimm.size)
        .u64(24, 0) // region offset
        .u64(32, 0) // DPA
        .u16(40, 0) // no interleave structure
        .u16(42, 1) // ways
        .u16(44, dimm.memdev_flags.0);
    r.0
}

/// Linux reads vendor, device, revision, the three subsystem ids, the manufacturing
/// date and the serial number with be16_to_cpu/be32_to_cpu (core.c *_show and
/// acpi_nfit_add_dimm), so they are stored big-endian here: then the id Linux and
/// ndctl print is exactly `DimmIdentity::ndctl_id()`. The format code is read le16.
fn dcr(index: usize, id: &DimmIdentity) -> Vec<u8> {
    let mut r = Record::new(TYPE_DCR, DCR_LEN);
    r.u16(4, range_index(index))
        .be16(6, id.vendor_id)
        .be16(8, id.device_id)
        .be16(10, id.revision_id)
        .be16(12, id.subsystem_vendor_id)
        .be16(14, id.subsystem_device_id)
        .be16(16, id.subsystem_revision_id)
        .u8(18, DCR_MFG_INFO_VALID)
        .u8(19, id.manufacturing_location)
        .be16(20, id.manufacturing_date)
        .be32(24, id.serial_number)
        .u16(28, FORMAT_INTERFACE_CODE)
        .u16(30, 0); // no block control windows
    r.0
}

fn flush_hint(dimm: &DimmConfig, place: &DimmPlacement) -> Option<Vec<u8>> {
    if place.flush_hints.is_empty() {
        return None;
    }
    let count = place.flush_hints.len();
    let mut r = Record::new(TYPE_FLUSH_HINT, FLUSH_HINT_HEADER_LEN + 8 * count);
    r.u32(4, dimm.handle).u16(8, count as u16);
    for (n, &addr) in place.flush_hints.iter().enumerate() {
        r.u64(FLUSH_HINT_HEADER_LEN + 8 * n, addr);
    }
    Some(r.0)
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
    let mut r = Record::new(TYPE_CAPABILITIES, CAPABILITIES_LEN);
    r.u8(4, highest).u32(8, caps);
    Some(r.0)
}

/// The NFIT sub-structures without the table header: the NFIT body, and what `_FIT`
/// returns. Per DIMM in configuration order: SPA, memdev, DCR, flush hints; then the
/// platform capabilities. Extra layout placements beyond the configured DIMMs are ignored.
pub fn structures(config: &PlatformConfig, layout: &PlatformLayout) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, (dimm, place)) in config.dimms.iter().zip(&layout.dimms).enumerate() {
        body.extend(spa(index, dimm, place));
        body.extend(memdev(index, dimm));
        body.extend(dcr(index, &dimm.identity));
        if let Some(hints) = flush_hint(dimm, place) {
            body.extend(hints);
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
