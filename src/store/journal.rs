//! The commit journal: a batch of small incoming messages made durable by
//! one short sequential write instead of a durable redb commit.
//!
//! A durable redb commit writes every page the batch touched (~30 pages,
//! scattered over the file, for one or two messages) and waits for their
//! fsync; on the disks measured here that costs 3-5x an fdatasync of a few
//! contiguous pages. So the writer appends what it was asked to commit
//! (each message's bytes and envelope, encoded by ingest) to this file and
//! starts its writeback, commits the batch to redb without durability
//! meanwhile, then fdatasyncs the file and only then answers. A checkpoint (a durable redb commit, every
//! `store.checkpoint_interval` or 4 MiB) makes the records redundant, and
//! the file is written from its start again. After a crash, the records
//! newer than the store's last durable sequence number are handed back to
//! be ingested again (see `Committer::journal_backlog`).
//!
//! A record: magic, the database's journal id, first sequence number, entry
//! count, payload length, CRC-32 of those and the payload; the payload is
//! each entry's length and bytes, one sequence number per entry. The id
//! (random, kept in the database) keeps a journal left beside a replaced
//! database from being ingested into it. The file is preallocated with
//! zeros, so an append changes no metadata. A reader stops at the first
//! record that is torn, foreign, or not the successor of the one before it
//! (what is left of an earlier round).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

const MAGIC: u32 = 0x4d47_4a31; // "MGJ1"
const HEADER: usize = 4 + 8 + 8 + 4 + 4 + 4;
/// The file's preallocated size.
const CAPACITY: u64 = 8 * 1024 * 1024;
/// Past this many bytes the writer checkpoints and starts over.
pub const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// Largest payload one record may carry: a batch with more goes to redb
/// durably instead, so the file stays within [`CAPACITY`].
pub const MAX_RECORD: usize = 2 * 1024 * 1024;

/// One entry of a record that the store has not made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: u64,
    pub entry: Bytes,
}

/// The open journal file; used by the writer thread alone.
pub struct Journal {
    file: File,
    path: PathBuf,
    id: u64,
    offset: u64,
    next_seq: u64,
    written: bool,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for the database with
    /// journal id `id`. `applied` is the last sequence number the database
    /// holds durably: the entries after it are returned, in order, and new
    /// records are written after them.
    pub fn open(path: &Path, id: u64, applied: u64) -> io::Result<(Journal, Vec<Pending>)> {
        if !path.exists() {
            crate::auth::private_fs::create_file(path, b"")?;
        }
        let file = File::options().read(true).write(true).open(path)?;
        let bytes = std::fs::read(path)?;
        let (records, end) = read_records(&bytes, id);
        let mut pending = Vec::new();
        let mut last = applied;
        for (first, entries) in records {
            for (i, entry) in entries.into_iter().enumerate() {
                let seq = first + i as u64;
                last = last.max(seq);
                if seq > applied {
                    pending.push(Pending {
                        seq,
                        entry: Bytes::copy_from_slice(entry),
                    });
                }
            }
        }
        let len = file.metadata()?.len();
        if len < CAPACITY {
            // Zeros, not a hole: an append into allocated blocks is a data
            // write only, which is what makes its fdatasync cheap.
            let zeros = vec![0u8; (CAPACITY - len) as usize];
            file.write_all_at(&zeros, len)?;
            file.sync_all()?;
        }
        let journal = Journal {
            file,
            path: path.to_path_buf(),
            id,
            offset: if pending.is_empty() { 0 } else { end as u64 },
            next_seq: last + 1,
            written: !pending.is_empty(),
        };
        Ok((journal, pending))
    }

    /// The sequence number the next appended entry gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one record of `entries` (numbered from [`next_seq`]) and
    /// waits until it is on disk: [`write`] then [`sync`].
    ///
    /// [`next_seq`]: Journal::next_seq
    /// [`write`]: Journal::write
    /// [`sync`]: Journal::sync
    #[cfg(test)]
    pub fn append(&mut self, entries: &[&[u8]]) -> io::Result<()> {
        let written = self.write(entries)?;
        self.sync(written)
    }

    /// Writes one record of `entries` (numbered from [`next_seq`]) and
    /// starts its writeback without waiting for it, so that the writer
    /// applies the batch to redb while the disk takes the record; then
    /// [`sync`] or, if the batch failed, [`discard`]. On error nothing is
    /// used up: a partial record is torn and the next write overwrites it.
    ///
    /// [`next_seq`]: Journal::next_seq
    /// [`sync`]: Journal::sync
    /// [`discard`]: Journal::discard
    pub fn write(&mut self, entries: &[&[u8]]) -> io::Result<Written> {
        let first = self.next_seq;
        let record = encode(self.id, first, entries);
        self.file.write_all_at(&record, self.offset)?;
        start_writeback(&self.file, self.offset, record.len());
        let written = Written {
            offset: self.offset,
            first,
        };
        self.next_seq += entries.len() as u64;
        self.offset += record.len() as u64;
        self.written = true;
        Ok(written)
    }

    /// Waits until the record [`write`](Journal::write) made is on disk.
    /// On error it may or may not be: the caller makes its batch durable
    /// in the store and restarts the journal.
    pub fn sync(&mut self, _written: Written) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Takes back the record [`write`](Journal::write) made, for a batch
    /// whose transaction failed and whose senders are told so: its magic
    /// is zeroed on disk, so no reader gets to it, and the next record
    /// takes its place and numbers. On error the record may still be read
    /// after a crash.
    pub fn discard(&mut self, written: Written) -> io::Result<()> {
        self.file.write_all_at(&[0; 4], written.offset)?;
        self.file.sync_data()?;
        self.offset = written.offset;
        self.next_seq = written.first;
        Ok(())
    }

    /// True when enough was written that a checkpoint is due.
    pub fn full(&self) -> bool {
        self.offset >= CHECKPOINT_BYTES
    }

    /// True when records were written since the last [`restart`].
    ///
    /// [`restart`]: Journal::restart
    pub fn written(&self) -> bool {
        self.written
    }

    /// After a checkpoint: everything in the file is redundant, the next
    /// record goes to its start.
    pub fn restart(&mut self) {
        self.offset = 0;
        self.written = false;
    }
}

/// A record [`Journal::write`] wrote: where, and its first number.
#[derive(Debug)]
#[must_use = "a written record is synced or discarded"]
pub struct Written {
    offset: u64,
    first: u64,
}

/// Asks the kernel to start writing `len` bytes at `offset` to the disk
/// without waiting: only a head start for the `fdatasync` that follows,
/// which is what makes them durable.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a descriptor that `file` keeps open and
    // plain integers; it touches no memory of this process.
    let _hint = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: usize) {}

fn encode(id: u64, first: u64, entries: &[&[u8]]) -> Vec<u8> {
    let payload_len: usize = entries.iter().map(|e| 4 + e.len()).sum();
    let mut out = Vec::with_capacity(HEADER + payload_len);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for entry in entries {
        out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        out.extend_from_slice(entry);
    }
    let crc = checksum(&out);
    out[HEADER - 4..HEADER].copy_from_slice(&crc.to_le_bytes());
    out
}

/// CRC-32 of a record with its checksum field taken as zero.
fn checksum(record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[..HEADER - 4]);
    h.update(&record[HEADER..]);
    h.finalize()
}

/// A record as read: its first sequence number and its entries.
type Record<'a> = (u64, Vec<&'a [u8]>);

/// The valid records from the file's start, and the offset after the last.
fn read_records(bytes: &[u8], id: u64) -> (Vec<Record<'_>>, usize) {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut expected: Option<u64> = None;
    while let Some((record_id, first, entries, len)) = read_one(&bytes[at..]) {
        if record_id != id || expected.is_some_and(|e| e != first) {
            break;
        }
        expected = Some(first + entries.len() as u64);
        records.push((first, entries));
        at += len;
    }
    (records, at)
}

/// One record: its journal id, first sequence number, entries and length.
fn read_one(bytes: &[u8]) -> Option<(u64, u64, Vec<&[u8]>, usize)> {
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    if bytes.len() < HEADER || u32_at(0) != MAGIC {
        return None;
    }
    let (id, first) = (u64_at(4), u64_at(12));
    let count = u32_at(20) as usize;
    let payload_len = u32_at(24) as usize;
    let total = HEADER.checked_add(payload_len)?;
    if count == 0 || total > bytes.len() || checksum(&bytes[..total]) != u32_at(28) {
        return None;
    }
    let mut entries = Vec::with_capacity(count.min(payload_len / 4));
    let mut at = HEADER;
    for _ in 0..count {
        let len = u32_at(at) as usize;
        let end = (at + 4).checked_add(len).filter(|e| *e <= total)?;
        entries.push(&bytes[at + 4..end]);
        at = end;
    }
    (at == total).then_some((id, first, entries, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u64 = 0x5eed;

    fn entries(p: &[Pending]) -> Vec<(u64, &[u8])> {
        p.iter().map(|p| (p.seq, p.entry.as_ref())).collect()
    }

    #[test]
    fn entries_after_the_applied_number_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, pending) = Journal::open(&path, ID, 0).unwrap();
        assert!(pending.is_empty());
        assert_eq!(j.next_seq(), 1);
        j.append(&[b"one", b"two"]).unwrap();
        j.append(&[b"three"]).unwrap();
        drop(j);
        let (j, pending) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(
            entries(&pending),
            vec![(1, &b"one"[..]), (2, b"two"), (3, b"three")]
        );
        assert_eq!(j.next_seq(), 4);
        // The store already holds 1 and 2 durably.
        let (_, pending) = Journal::open(&path, ID, 2).unwrap();
        assert_eq!(entries(&pending), vec![(3, &b"three"[..])]);
        // The file was preallocated once.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), CAPACITY);
    }

    #[test]
    fn new_records_go_after_a_backlog_and_restart_overwrites_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, ID, 0).unwrap();
        j.append(&[b"a"]).unwrap();
        j.append(&[b"b"]).unwrap();
        drop(j);
        let (mut j, backlog) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(backlog.len(), 2);
        assert!(j.written());
        j.append(&[b"c"]).unwrap();
        drop(j);
        let (mut j, all) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(entries(&all), vec![(1, &b"a"[..]), (2, b"b"), (3, b"c")]);
        // A checkpoint made 1..=3 durable; the next round starts at offset 0.
        j.restart();
        j.append(&[b"d"]).unwrap();
        drop(j);
        let (_, left) = Journal::open(&path, ID, 3).unwrap();
        // Record 2 and 3 of the old round follow d; 2 is not d's successor.
        assert_eq!(entries(&left), vec![(4, &b"d"[..])]);
    }

    #[test]
    fn a_discarded_record_is_not_read_and_the_next_takes_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, ID, 0).unwrap();
        j.append(&[b"kept"]).unwrap();
        let written = j.write(&[b"failed", b"batch"]).unwrap();
        j.discard(written).unwrap();
        assert_eq!(j.next_seq(), 2);
        drop(j);
        let (mut j, pending) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(entries(&pending), vec![(1, &b"kept"[..])]);
        let written = j.write(&[b"later"]).unwrap();
        j.sync(written).unwrap();
        drop(j);
        let (_, pending) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(entries(&pending), vec![(1, &b"kept"[..]), (2, b"later")]);
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, ID, 0).unwrap();
        j.append(&[b"kept"]).unwrap();
        j.append(&[b"torn record"]).unwrap();
        j.append(&[b"after"]).unwrap();
        drop(j);
        // Flip one byte of the second record's payload.
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + 4 + 4;
        bytes[second + HEADER + 5] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (j, pending) = Journal::open(&path, ID, 0).unwrap();
        assert_eq!(entries(&pending), vec![(1, &b"kept"[..])]);
        // Sequence numbers stay unique: the next one follows the last read.
        assert_eq!(j.next_seq(), 2);
    }

    #[test]
    fn garbage_is_no_record() {
        for bytes in [
            vec![],
            vec![0u8; 100],
            MAGIC.to_le_bytes().to_vec(),
            encode(ID, 1, &[b"x"])[..HEADER + 2].to_vec(),
        ] {
            assert!(read_records(&bytes, ID).0.is_empty(), "{bytes:?}");
        }
        // A length that points past the record.
        let mut bad = encode(ID, 7, &[b"abc"]);
        bad[HEADER] = 200;
        assert!(read_one(&bad).is_none());
        assert_eq!(read_one(&encode(ID, 7, &[b"abc", b""])).unwrap().2.len(), 2);
    }

    #[test]
    fn a_journal_of_another_database_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut j, _) = Journal::open(&path, ID, 0).unwrap();
        j.append(&[b"old database"]).unwrap();
        drop(j);
        let (j, pending) = Journal::open(&path, ID + 1, 0).unwrap();
        assert!(pending.is_empty());
        assert_eq!(j.next_seq(), 1);
    }
}
