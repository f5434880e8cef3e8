//! `--kernel` must be a kernel: an ELF vmlinux (booted through PVH) or a bzImage (the
//! x86 boot protocol's `HdrS` header). Anything else, such as a file of zeros, made
//! QEMU sit in firmware forever (issue 10, point 6); now it is refused before anything
//! starts, as a bad option.

use std::io::Read;
use std::path::Path;

use crate::cli::Failure;

/// Offset of the boot protocol's header magic in a bzImage.
const BZIMAGE_MAGIC_AT: usize = 0x202;

pub fn check_kernel(path: &Path) -> Result<(), Failure> {
    let mut head = Vec::with_capacity(BZIMAGE_MAGIC_AT + 4);
    std::fs::File::open(path)
        .and_then(|f| f.take(BZIMAGE_MAGIC_AT as u64 + 4).read_to_end(&mut head))
        .map_err(|e| Failure::usage(format!("--kernel: {}: {e}", path.display())))?;
    if is_kernel(&head) {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "--kernel: {} is not a Linux kernel: neither an ELF vmlinux nor a bzImage (no HdrS boot header at {BZIMAGE_MAGIC_AT:#x})",
        path.display()
    )))
}

fn is_kernel(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") || head.get(BZIMAGE_MAGIC_AT..BZIMAGE_MAGIC_AT + 4) == Some(b"HdrS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_and_bzimage_pass_zeros_and_text_do_not() {
        let mut bz = vec![0u8; 0x400];
        bz[BZIMAGE_MAGIC_AT..BZIMAGE_MAGIC_AT + 4].copy_from_slice(b"HdrS");
        assert!(is_kernel(b"\x7fELF\x02\x01\x01"));
        assert!(is_kernel(&bz));
        for bad in [&vec![0u8; 1 << 20][..], b"#!/bin/sh\n", b"", b"\x7fEL"] {
            assert!(!is_kernel(bad), "{:?}", &bad[..bad.len().min(8)]);
        }
    }

    #[test]
    fn the_message_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let zeros = dir.path().join("zeros");
        std::fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
        let e = check_kernel(&zeros).unwrap_err();
        assert!(e.usage && e.message.contains("zeros") && e.message.contains("not a Linux kernel"), "{}", e.message);
    }
}
