//! The two encodings the agent protocol borrows from busybox: base64 (`base64`,
//! RFC 4648 alphabet with padding) and CRC-32 (`crc32`, the zlib/IEEE polynomial).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("base64 text has a character outside the alphabet at byte {0}")]
    BadChar(usize),
    #[error("base64 text has {0} significant characters, which no byte count encodes")]
    BadLength(usize),
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sextet(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes base64, ignoring whitespace (the agent wraps lines) and trailing `=`.
pub fn base64_decode(text: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits, mut count) = (0u32, 0u32, 0usize);
    let mut padding = false;
    for (i, &c) in text.iter().enumerate() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding = true;
            continue;
        }
        let v = sextet(c)
            .filter(|_| !padding)
            .ok_or(CodecError::BadChar(i))?;
        acc = (acc << 6) | v;
        bits += 6;
        count += 1;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if count % 4 == 1 {
        return Err(CodecError::BadLength(count));
    }
    Ok(out)
}

/// CRC-32 as busybox `crc32` and zlib compute it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_tail_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..40 {
            let enc = base64_encode(&data[..n]);
            assert_eq!(enc.len() % 4, 0);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), &data[..n], "n={n}");
        }
        assert_eq!(base64_encode(b"hi\n"), "aGkK");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn base64_decode_skips_line_breaks_and_rejects_garbage() {
        assert_eq!(base64_decode(b"aGVs\nbG8K\r\n").unwrap(), b"hello\n");
        assert_eq!(base64_decode(b"aGk*"), Err(CodecError::BadChar(3)));
        assert_eq!(base64_decode(b"YWI=YQ=="), Err(CodecError::BadChar(4)));
        assert_eq!(base64_decode(b"aGkKa"), Err(CodecError::BadLength(5)));
    }

    #[test]
    fn crc32_matches_busybox_and_zlib() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"abc"), 0x3524_41c2);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
