//! The release (`uname -r`) a kernel image was built as, read from the image itself:
//! a file name or a package version can lie, the string the kernel prints cannot.
//! - bzImage: the boot protocol header's `kernel_version` (offset 0x20E) points at a
//!   NUL-terminated string "RELEASE (builder) #1 ..." in the setup code (pointer + 0x200);
//! - ELF vmlinux: `linux_banner`, "Linux version RELEASE (builder) ...", in .rodata.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Where the boot protocol's "HdrS" magic sits in a bzImage.
const HDRS_AT: usize = 0x202;
/// Where the 16-bit pointer to the version string sits; the pointer counts from 0x200.
const VERSION_PTR_AT: usize = 0x20E;
const BANNER: &[u8] = b"Linux version ";

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("--kernel {path}: cannot read it: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "--kernel {path}: no kernel release found in it ({what}); --modules needs it to pick the \
         matching modules: boot a bzImage or vmlinux as the kernel build produced it"
    )]
    NotFound { path: PathBuf, what: &'static str },
}

/// The release of the bzImage or ELF vmlinux at `path`.
pub fn kernel_release(path: &Path) -> Result<String, ReleaseError> {
    let bytes = std::fs::read(path).map_err(|source| ReleaseError::Read { path: path.to_path_buf(), source })?;
    let (found, what) = if bytes.starts_with(b"\x7fELF") {
        (from_vmlinux(&bytes), "an ELF vmlinux without a \"Linux version\" banner")
    } else {
        (from_bzimage(&bytes), "a bzImage whose header has no version string")
    };
    found.ok_or(ReleaseError::NotFound { path: path.to_path_buf(), what })
}

/// The first word of the bzImage header's version string.
pub fn from_bzimage(image: &[u8]) -> Option<String> {
    if image.get(HDRS_AT..HDRS_AT + 4) != Some(b"HdrS") {
        return None;
    }
    let ptr = u16::from_le_bytes(image.get(VERSION_PTR_AT..VERSION_PTR_AT + 2)?.try_into().ok()?);
    // A zero pointer means "no version string" (boot protocol 2.00).
    if ptr == 0 {
        return None;
    }
    release_word(image.get(usize::from(ptr) + 0x200..)?)
}

/// The release in the first "Linux version RELEASE (" of an ELF vmlinux. Format
/// strings such as "Linux version %s" are skipped: the release has no '%'.
pub fn from_vmlinux(image: &[u8]) -> Option<String> {
    let mut at = 0;
    while let Some(pos) = find(&image[at..], BANNER) {
        let rest = &image[at + pos + BANNER.len()..];
        let end = rest.iter().take(256).position(|&b| b == b' ')?;
        if rest[end..].starts_with(b" (") {
            if let Some(release) = release_word(&rest[..end]) {
                return Some(release);
            }
        }
        at += pos + 1;
    }
    None
}

/// The bytes up to the first space or NUL, if they look like a release.
fn release_word(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().take(256).position(|&b| b == b' ' || b == 0).unwrap_or(bytes.len().min(256));
    let word = &bytes[..end];
    let plausible = !word.is_empty() && word[0].is_ascii_digit() && word.iter().all(|&b| b.is_ascii_graphic() && b != b'%');
    plausible.then(|| String::from_utf8_lossy(word).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut at = 0;
    while let Some(pos) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + pos;
        if haystack[start..].starts_with(needle) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bzImage-shaped file whose header points at `version`.
    pub(crate) fn fake_bzimage(version: &str) -> Vec<u8> {
        let mut image = vec![0u8; 0x1000];
        image[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        image[HDRS_AT..HDRS_AT + 4].copy_from_slice(b"HdrS");
        let at = 0x600;
        image[VERSION_PTR_AT..VERSION_PTR_AT + 2].copy_from_slice(&((at - 0x200) as u16).to_le_bytes());
        image[at..at + version.len()].copy_from_slice(version.as_bytes());
        image
    }

    /// An ELF-shaped file with `banner` somewhere in its data, after a format string.
    pub(crate) fn fake_vmlinux(release: &str) -> Vec<u8> {
        let mut image = b"\x7fELF\x02\x01\x01".to_vec();
        image.resize(0x3000, 0);
        image.extend_from_slice(b"Linux version %s (%s)\0\0Linux version ");
        image.extend_from_slice(release.as_bytes());
        image.extend_from_slice(b" (builder@host) (gcc 12) #1 SMP PREEMPT_DYNAMIC\n\0");
        image.resize(image.len() + 0x100, 0);
        image
    }

    #[test]
    fn bzimage_header_string() {
        let image = fake_bzimage("6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP\0");
        assert_eq!(from_bzimage(&image).as_deref(), Some("6.12.118+deb12-amd64"));
        // Nothing after the release but the NUL.
        assert_eq!(from_bzimage(&fake_bzimage("6.1.0-57-amd64\0")).as_deref(), Some("6.1.0-57-amd64"));
    }

    #[test]
    fn bzimage_without_a_version_string() {
        let mut image = fake_bzimage("6.1.0\0");
        image[VERSION_PTR_AT..VERSION_PTR_AT + 2].fill(0);
        assert_eq!(from_bzimage(&image), None);
        // Pointing past the end of the file.
        let mut image = fake_bzimage("6.1.0\0");
        image[VERSION_PTR_AT..VERSION_PTR_AT + 2].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(from_bzimage(&image), None);
        // No boot header at all.
        assert_eq!(from_bzimage(&vec![0u8; 0x1000]), None);
    }

    #[test]
    fn vmlinux_banner_skips_format_strings() {
        assert_eq!(from_vmlinux(&fake_vmlinux("6.1.0-57-amd64")).as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(from_vmlinux(&fake_vmlinux("6.13.0-rc1-dirty")).as_deref(), Some("6.13.0-rc1-dirty"));
        assert_eq!(from_vmlinux(b"\x7fELF Linux version %s (%s)\0"), None);
    }

    #[test]
    fn the_file_decides_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("vmlinuz-6.1.0-57-amd64");
        std::fs::write(&elf, fake_vmlinux("6.12.1-test")).unwrap();
        assert_eq!(kernel_release(&elf).unwrap(), "6.12.1-test");
        let bz = dir.path().join("bzImage");
        std::fs::write(&bz, fake_bzimage("6.12.2 (x@y) #1\0")).unwrap();
        assert_eq!(kernel_release(&bz).unwrap(), "6.12.2");
        let nothing = dir.path().join("elf-without-banner");
        std::fs::write(&nothing, b"\x7fELF\x02\x01\x01 nothing here").unwrap();
        let e = kernel_release(&nothing).unwrap_err().to_string();
        assert!(e.contains("elf-without-banner") && e.contains("no kernel release"), "{e}");
    }
}
