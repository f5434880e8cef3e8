//! Identifiers in every table header we generate. Constant so the tables are
//! byte-identical from run to run (golden files, reproducible guests).

pub const OEM_ID: [u8; 6] = *b"VNVDMM";
pub const OEM_REVISION: u32 = 1;

/// OEM table id: "VNVD" followed by the table's signature, e.g. `VNVDFACP`.
pub fn table_id(signature: &[u8; 4]) -> [u8; 8] {
    let mut id = *b"VNVD____";
    id[4..].copy_from_slice(signature);
    id
}
