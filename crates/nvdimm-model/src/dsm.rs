//! `_DSM` identifiers and status codes shared by the root and DIMM handlers.

/// Root device (`ACPI0012`) UUID 2F10E7A4-9E91-11E4-89D3-123B93F75CBA, in `ToUUID` byte order.
pub const ROOT_UUID: [u8; 16] =
    [0xa4, 0xe7, 0x10, 0x2f, 0x91, 0x9e, 0xe4, 0x11, 0x89, 0xd3, 0x12, 0x3b, 0x93, 0xf7, 0x5c, 0xba];
/// Intel DIMM family UUID 4309AC30-0D11-11E4-9191-0800200C9A66, in `ToUUID` byte order.
pub const INTEL_UUID: [u8; 16] =
    [0x30, 0xac, 0x09, 0x43, 0x11, 0x0d, 0xe4, 0x11, 0x91, 0x91, 0x08, 0x00, 0x20, 0x0c, 0x9a, 0x66];

pub const ROOT_UUID_STR: &str = "2f10e7a4-9e91-11e4-89d3-123b93f75cba";
pub const INTEL_UUID_STR: &str = "4309ac30-0d11-11e4-9191-0800200c9a66";

/// Root `_DSM` status (low 16 bits of the first output dword).
pub mod root_status {
    pub const SUCCESS: u32 = 0;
    pub const NOT_SUPPORTED: u32 = 1;
    pub const INVALID_INPUT: u32 = 2;
    pub const HW_ERROR: u32 = 3;
    pub const RETRY: u32 = 4;
    pub const UNKNOWN: u32 = 5;
    pub const FUNCTION_SPECIFIC: u32 = 6;
}

/// Intel DIMM `_DSM` status (low 16 bits of the first output dword).
pub mod intel_status {
    pub const SUCCESS: u32 = 0;
    pub const NOT_SUPPORTED: u32 = 1;
    pub const NO_SUCH_DEVICE: u32 = 2;
    pub const INVALID_INPUT: u32 = 3;
    pub const HW_ERROR: u32 = 4;
    pub const RETRY: u32 = 5;
    pub const UNKNOWN: u32 = 6;
    pub const EXTENDED: u32 = 7;
    pub const OUT_OF_RESOURCES: u32 = 8;
    pub const NOT_READY: u32 = 9;
}

/// A status-only answer.
pub fn status_only(status: u32) -> Vec<u8> {
    status.to_le_bytes().to_vec()
}

/// What an unknown UUID or unknown function 0 query gets: a one-byte zero Buffer,
/// which Linux reads as "no functions".
pub fn no_functions() -> Vec<u8> {
    vec![0]
}

/// Function 0 answer: a little-endian bitmask of supported functions (bit 0 set).
pub fn function_mask(mask: u64) -> Vec<u8> {
    let bytes = mask.to_le_bytes();
    let used = 8 - (mask.leading_zeros() as usize / 8);
    bytes[..used.max(1)].to_vec()
}

/// Little-endian field reader for guest-supplied input. Every read is bounds-checked
/// and returns `None` past the end, so a short buffer is an answer, never a panic.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    pub fn u8(&self, at: usize) -> Option<u8> {
        self.0.get(at).copied()
    }
    pub fn u16(&self, at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.0.get(at..at.checked_add(2)?)?.try_into().ok()?))
    }
    pub fn u32(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.0.get(at..at.checked_add(4)?)?.try_into().ok()?))
    }
    pub fn u64(&self, at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(self.0.get(at..at.checked_add(8)?)?.try_into().ok()?))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Little-endian output builder.
#[derive(Default)]
pub struct Output(pub Vec<u8>);

impl Output {
    pub fn new() -> Self {
        Output(Vec::with_capacity(64))
    }
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    pub fn zeros(mut self, n: usize) -> Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_mask_is_minimal_little_endian() {
        assert_eq!(function_mask(0x3be | 1), vec![0xbf, 0x03]);
        assert_eq!(function_mask(1), vec![1]);
    }

    #[test]
    fn input_reads_are_bounded() {
        let input = Input(&[1, 2, 3]);
        assert_eq!(input.u16(1), Some(0x0302));
        assert_eq!(input.u32(0), None);
        assert_eq!(input.u64(usize::MAX), None);
    }
}
