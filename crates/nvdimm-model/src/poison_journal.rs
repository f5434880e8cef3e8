//! The poison journal: `<backing file>.poison.journal`, an append-only log of poison
//! changes next to the state file. Rewriting the whole state file for every added range
//! cost O(ranges) per add (7.5 ms at 29k ranges; issue 10, point 9); appending a record
//! costs O(1) and one `fdatasync` per batch. The state file stays the snapshot: when the
//! journal has grown past the poison list (`Dimm::compact`), the snapshot is rewritten
//! atomically and the journal emptied, so the cost per change stays O(log n) amortised.
//!
//! Records are 32 bytes: kind, offset, length, check (all little-endian u64). A batch is
//! its add/clear records followed by a commit record, written with one `write` and made
//! durable with one `fdatasync` before the change is acknowledged. Replay applies
//! committed batches only: a crash mid-append leaves a torn or uncommitted tail, which is
//! ignored (and cut off before the next append). Replay is idempotent (each point's
//! membership is decided by the last change that touched it), so a crash between
//! rewriting the snapshot and emptying the journal loses and doubles nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::persist::PersistError;
use crate::poison::PoisonSet;

const RECORD: usize = 32;
const KIND_ADD: u64 = 1;
const KIND_CLEAR: u64 = 2;
const KIND_COMMIT: u64 = 3;
/// Mixed into the check so that zeros (a file extended by a crash) never pass.
const CHECK_SALT: u64 = 0x766e_7664_696d_6d31; // "vnvdimm1"

/// One change of a poison set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonOp {
    Add { offset: u64, len: u64 },
    Clear { offset: u64, len: u64 },
}

impl PoisonOp {
    /// Applies the change to `set`; the cleared bytes for a clear, 0 for an add.
    pub fn apply(&self, set: &mut PoisonSet) -> Result<u64, crate::poison::PoisonError> {
        match *self {
            PoisonOp::Add { offset, len } => set.insert(offset, len).map(|()| 0),
            PoisonOp::Clear { offset, len } => set.remove(offset, len),
        }
    }

    fn encode(&self) -> [u8; RECORD] {
        match *self {
            PoisonOp::Add { offset, len } => record(KIND_ADD, offset, len),
            PoisonOp::Clear { offset, len } => record(KIND_CLEAR, offset, len),
        }
    }
}

fn record(kind: u64, offset: u64, len: u64) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0..8].copy_from_slice(&kind.to_le_bytes());
    r[8..16].copy_from_slice(&offset.to_le_bytes());
    r[16..24].copy_from_slice(&len.to_le_bytes());
    let check = check_of(&r[..24]);
    r[24..32].copy_from_slice(&check.to_le_bytes());
    r
}

/// FNV-1a over the record's first 24 bytes: detects torn and garbage records.
fn check_of(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64 ^ CHECK_SALT, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn decode(r: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |i: usize| u64::from_le_bytes(r[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    (check_of(&r[..24]) == word(3)).then(|| (word(0), word(1), word(2)))
}

/// The journal of one DIMM.
#[derive(Debug)]
pub struct PoisonJournal {
    path: PathBuf,
    /// Opened on the first append (a DIMM whose poison never changes never creates it).
    file: Option<File>,
    /// Bytes up to the end of the last committed batch.
    valid_len: u64,
    /// Add/clear records in the valid part.
    records: u64,
}

impl PoisonJournal {
    /// Reads the journal at `path` (missing: empty) and applies its committed batches
    /// to `set`, which holds the snapshot from the state file.
    pub fn replay(path: &Path, set: &mut PoisonSet) -> Result<PoisonJournal, PersistError> {
        let io_err = |op, source| PersistError::Io { op, path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(|e| io_err("read", e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("open", e)),
        }
        let (mut valid_len, mut records) = (0u64, 0u64);
        let mut batch: Vec<PoisonOp> = Vec::new();
        for (i, chunk) in bytes.chunks_exact(RECORD).enumerate() {
            let Some((kind, offset, len)) = decode(chunk) else {
                break;
            };
            match kind {
                KIND_ADD => batch.push(PoisonOp::Add { offset, len }),
                KIND_CLEAR => batch.push(PoisonOp::Clear { offset, len }),
                KIND_COMMIT => {
                    for op in batch.drain(..) {
                        op.apply(set).map_err(|e| PersistError::Journal {
                            path: path.to_path_buf(),
                            message: format!("record {i}: {e}"),
                        })?;
                        records += 1;
                    }
                    valid_len = ((i + 1) * RECORD) as u64;
                }
                _ => break,
            }
        }
        Ok(PoisonJournal { path: path.to_path_buf(), file: None, valid_len, records })
    }

    /// Change records since the journal was last emptied.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Appends `ops` as one committed batch and makes it durable. On failure the
    /// journal is cut back to where it was (and a torn tail is ignored at replay anyway).
    pub fn append(&mut self, ops: &[PoisonOp]) -> Result<(), PersistError> {
        if ops.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let io_err = |op, source| PersistError::Io { op, path: path.clone(), source };
        let valid_len = self.valid_len;
        let file = self.open()?;
        let mut data = Vec::with_capacity((ops.len() + 1) * RECORD);
        for op in ops {
            data.extend_from_slice(&op.encode());
        }
        data.extend_from_slice(&record(KIND_COMMIT, 0, 0));
        let written = file.write_all(&data).and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = file.set_len(valid_len);
            return Err(io_err("append to", e));
        }
        self.valid_len += data.len() as u64;
        self.records += ops.len() as u64;
        Ok(())
    }

    /// Empties the journal (after the state file took in everything it held).
    pub fn reset(&mut self) -> Result<(), PersistError> {
        if self.valid_len == 0 && self.file.is_none() {
            return Ok(());
        }
        let path = self.path.clone();
        let file = self.open()?;
        file.set_len(0).and_then(|()| file.sync_data()).map_err(|source| PersistError::Io {
            op: "empty",
            path,
            source,
        })?;
        self.valid_len = 0;
        self.records = 0;
        Ok(())
    }

    /// The open journal, created if missing, with anything past the last commit cut off.
    fn open(&mut self) -> Result<&mut File, PersistError> {
        if self.file.is_none() {
            let path = self.path.clone();
            let io_err = |op, source| PersistError::Io { op, path: path.clone(), source };
            let existed = path.exists();
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_err("open", e))?;
            file.set_len(self.valid_len).map_err(|e| io_err("cut the torn tail of", e))?;
            if !existed {
                crate::persist::sync_parent(&path)?;
            }
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("just opened");
        // Appends go to the end of the valid part (after set_len that is the file's end).
        io::Seek::seek(file, io::SeekFrom::Start(self.valid_len)).map_err(|source| PersistError::Io {
            op: "seek",
            path: self.path.clone(),
            source,
        })?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replayed(path: &Path) -> (PoisonSet, PoisonJournal) {
        let mut set = PoisonSet::new();
        let j = PoisonJournal::replay(path, &mut set).unwrap();
        (set, j)
    }

    #[test]
    fn committed_batches_come_back_and_a_torn_tail_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.poison.journal");
        let (_, mut j) = replayed(&path);
        j.append(&[PoisonOp::Add { offset: 0, len: 4096 }, PoisonOp::Add { offset: 8192, len: 512 }]).unwrap();
        j.append(&[PoisonOp::Clear { offset: 0, len: 1024 }]).unwrap();
        drop(j);
        // A crash mid-append: one record of an uncommitted batch plus half a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&PoisonOp::Add { offset: 1 << 20, len: 1 }.encode()).unwrap();
        f.write_all(&[7u8; 16]).unwrap();
        drop(f);
        let (set, mut j) = replayed(&path);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![(1024, 3072), (8192, 512)]);
        assert_eq!(j.records(), 3);
        j.append(&[PoisonOp::Add { offset: 1 << 30, len: 1 }]).unwrap();
        let (set, _) = replayed(&path);
        assert_eq!(set.len(), 3, "the append after the torn tail is readable");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 7 * RECORD as u64, "the torn tail was cut");
    }

    #[test]
    fn replay_is_idempotent_over_a_snapshot_that_already_has_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.poison.journal");
        let (_, mut j) = replayed(&path);
        let ops = [PoisonOp::Add { offset: 0, len: 100 }, PoisonOp::Clear { offset: 50, len: 10 }];
        j.append(&ops).unwrap();
        let (fresh, _) = replayed(&path);
        let mut snapshot = fresh.clone();
        PoisonJournal::replay(&path, &mut snapshot).unwrap();
        assert_eq!(snapshot, fresh);
    }

    #[test]
    fn reset_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.poison.journal");
        let (_, mut j) = replayed(&path);
        j.append(&[PoisonOp::Add { offset: 0, len: 1 }]).unwrap();
        j.reset().unwrap();
        assert_eq!(j.records(), 0);
        let (set, _) = replayed(&path);
        assert!(set.is_empty());
    }
}
