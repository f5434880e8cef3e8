//! A minimal `newc` cpio writer: enough to append a per-run archive (the test script,
//! another kernel's modules) to the cached initramfs. Linux unpacks concatenated archives
//! in order, later files replacing earlier ones.

/// One regular file for the archive.
pub struct CpioFile<'a> {
    /// Path inside the archive, without a leading '/'.
    pub name: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: usize, name: &str) {
    let namesize = name.len() + 1;
    let fields = [ino, mode, 0, 0, 1, 0, size as u32, 0, 0, 0, 0, namesize as u32, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A file or a directory. Linux's initramfs unpacker creates no missing parent
/// directories, so an archive that adds files below new paths lists each directory first.
pub enum CpioEntry<'a> {
    File(CpioFile<'a>),
    Dir { name: &'a str, mode: u32 },
}

/// An uncompressed newc archive of `files`, with the trailer, padded to 512 bytes.
pub fn archive(files: &[CpioFile<'_>]) -> Vec<u8> {
    let entries: Vec<CpioEntry<'_>> =
        files.iter().map(|f| CpioEntry::File(CpioFile { name: f.name, mode: f.mode, data: f.data })).collect();
    archive_entries(&entries)
}

/// An uncompressed newc archive of `entries` in the order given, with the trailer,
/// padded to 512 bytes.
pub fn archive_entries(entries: &[CpioEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let ino = 0x1000 + i as u32;
        match entry {
            CpioEntry::File(f) => {
                header(&mut out, ino, 0o100000 | (f.mode & 0o7777), f.data.len(), f.name);
                out.extend_from_slice(f.data);
                pad4(&mut out);
            }
            CpioEntry::Dir { name, mode } => header(&mut out, ino, 0o040000 | (mode & 0o7777), 0, name),
        }
    }
    header(&mut out, 0, 0, 0, "TRAILER!!!");
    while !out.len().is_multiple_of(512) {
        out.push(0);
    }
    out
}

/// Appends an archive of `files` to an initramfs (compressed or not), where Linux will
/// unpack it after the first: it only looks for another archive at a 4-byte aligned
/// offset after a compressed one, skipping zero bytes to get there.
pub fn append_archive(initramfs: &mut Vec<u8>, files: &[CpioFile<'_>]) {
    initramfs.resize(initramfs.len().next_multiple_of(4), 0);
    initramfs.extend(archive(files));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_tool_reads_our_archive() {
        let data = archive(&[CpioFile {
            name: "test.sh",
            mode: 0o755,
            data: b"echo hi\n",
        }]);
        assert_eq!(&data[..6], b"070701");
        assert_eq!(data.len() % 512, 0);
        // Cross-check with the system's cpio when present (it is on our machines).
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            // Without cpio only the structural checks above apply.
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        assert!(child.wait().unwrap().success());
        let path = dir.path().join("test.sh");
        assert_eq!(std::fs::read(&path).unwrap(), b"echo hi\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn cpio_tool_creates_our_directories() {
        let data = archive_entries(&[
            CpioEntry::Dir { name: "lib", mode: 0o755 },
            CpioEntry::Dir { name: "lib/m", mode: 0o700 },
            CpioEntry::File(CpioFile { name: "lib/m/a.ko", mode: 0o644, data: b"ko" }),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("cpio (apt-get install cpio)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        assert!(child.wait().unwrap().success());
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(dir.path().join("lib/m")).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read(dir.path().join("lib/m/a.ko")).unwrap(), b"ko");
    }

    #[test]
    fn appended_archive_starts_on_a_four_byte_boundary() {
        for len in 0..8usize {
            let mut initramfs = vec![0x1f; len];
            append_archive(&mut initramfs, &[CpioFile { name: "a", mode: 0o644, data: b"x" }]);
            let start = len.next_multiple_of(4);
            assert_eq!(&initramfs[start..start + 6], b"070701", "after {len} bytes");
            assert!(initramfs[len..start].iter().all(|&b| b == 0));
        }
    }
}
