//! The embedded store's spool: the contents of large messages, in files
//! beside the database instead of in it.
//!
//! Why: a content in SQLite is a chain of overflow pages, each written to
//! the WAL, read back and written again by the checkpoint, walked page by
//! page when it is deleted, and read page by page for its delivery. At
//! 100 KB a message that was about half of the server's CPU
//! (`bench/accept-deliver.sh`: with contents kept out of the database the
//! server's CPU fell from 2.1-2.6 to 1.3-1.4 s for 2,000 messages; BENCHMARKS.md).
//! Here a content is written once, read with one `pread` and deleted by
//! an `unlink`.
//!
//! Layout: the store writer writes the large contents of one group commit
//! into one new file, `spool/<n>`, one after another, syncs the file and
//! the directory, and only then commits the rows (`message_spool`: message,
//! file, start, length) that point into it. So a committed row always
//! points at bytes on stable storage, and a crash before the commit leaves
//! a file nothing points at. A file is deleted when no row points into it
//! any more ([`Spool::sweep`]: when the store opens, after a purge that
//! removed something, and once a minute with the compaction), so a message
//! kept long keeps only its own commit's file, not everyone's. A file of
//! this process that died is first kept a while to be written again
//! ([`FREE_AGE`], at most [`FREE_FILES`] files and [`FREE_BYTES`]): the
//! next commit renames it to its own new number and overwrites it, cut to
//! what it wrote, because writing into a file's pages and blocks again
//! costs about half the CPU and half the sync time of filling a new file
//! (10 x 100 KB a commit, write and sync: 59-79 against 114-131 µs of CPU
//! per 100 KB on an AMD EPYC; with steady traffic, `bench/steady.sh`, the
//! server's CPU fell 7 %; BENCHMARKS.md). Its dead bytes stay on disk
//! until then, as an unlinked file's stay in the free blocks. And a file
//! older than [`COMPACT_AGE`] with less than half of it still pointed at
//! has those contents written to a new file and the rows moved there, in
//! one commit (the writer's `compact`), so a few messages deferred for
//! days do not keep their neighbours' bytes on disk. A reader that finds
//! a file gone looks its row up again once; so does one whose file was
//! given a new number while it read ([`Spool::read`] checks that the name
//! it opened still names the file it read: the writer renames a file
//! before it writes into it again, so a read that saw none of the
//! renaming saw none of the new bytes either). Small contents ([`SPOOL_MIN`])
//! stay in the database, where one more file and two more syncs a commit
//! would cost more than they save.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Contents at least this long go to the spool.
pub(crate) const SPOOL_MIN: usize = 32 * 1024;

/// How old a spool file must be before its live contents may be moved.
pub(crate) const COMPACT_AGE: Duration = Duration::from_secs(600);

/// Where one content is: its file and its bytes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub file: i64,
    pub start: i64,
    pub length: i64,
}

impl Location {
    /// A `(message_id, file, start, length)` row of `message_spool`.
    pub(crate) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Location)> {
        Ok((
            r.get(0)?,
            Location {
                file: r.get(1)?,
                start: r.get(2)?,
                length: r.get(3)?,
            },
        ))
    }
}

/// The spool directory of one store.
pub(crate) struct Spool {
    dir: PathBuf,
    /// At least the number the next file gets. Numbers start from the
    /// clock (microseconds), so two processes on one store (the server and
    /// an admin command) rarely pick the same; when they do, the second
    /// takes the next free one.
    next: AtomicI64,
    /// Files not in flight: those this process wrote (it commits or
    /// removes its own before sweeping) and those a sweep saw rows point
    /// into (committed). The sweep removes these as soon as no row points
    /// into them. Any other file may be another process's commit in flight
    /// and is left until [`ORPHAN_AGE`] old, which no such commit can be.
    settled: Mutex<HashSet<i64>>,
    /// Dead files of this process kept to be written again, the newest
    /// last.
    free: Mutex<Vec<Free>>,
}

/// A dead spool file kept to be written again.
#[derive(Debug, Clone, Copy)]
struct Free {
    file: i64,
    bytes: u64,
    since: Instant,
}

/// How long a dead file is kept to be written again.
pub(crate) const FREE_AGE: Duration = Duration::from_secs(60);
/// At most this many dead files are kept to be written again...
const FREE_FILES: usize = 256;
/// ...holding at most this many bytes.
const FREE_BYTES: u64 = 128 << 20;

/// How old a file no row points into and that another process wrote must
/// be before a sweep removes it.
pub(crate) const ORPHAN_AGE: Duration = Duration::from_secs(600);

impl Spool {
    /// The spool of the data directory `data` (created if missing).
    pub(crate) fn open(data: &Path) -> io::Result<Spool> {
        let dir = data.join("spool");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)?;
            sync_dir(data)?;
        }
        Ok(Spool::at(data))
    }

    /// The spool of the data directory `data`, to read only (nothing is
    /// created).
    pub(crate) fn at(data: &Path) -> Spool {
        Spool {
            dir: data.join("spool"),
            next: AtomicI64::new(0),
            settled: Mutex::new(HashSet::new()),
            free: Mutex::new(Vec::new()),
        }
    }

    /// The path of `file`.
    pub(crate) fn path(&self, file: i64) -> PathBuf {
        self.dir.join(file.to_string())
    }

    /// Write `contents` into a file of a new number (a dead one written
    /// again where there is one), on stable storage when this returns;
    /// where each one is, in their order. A file left behind by a failure
    /// is removed.
    pub(crate) fn write(&self, contents: &[&[u8]]) -> io::Result<Vec<Location>> {
        let (file, mut f, old_length) = match self.reuse() {
            Some(reused) => reused,
            None => {
                let (file, f) = self.create()?;
                (file, f, 0)
            }
        };
        let length: u64 = contents.iter().map(|c| c.len() as u64).sum();
        let written = write_all(&mut f, contents)
            // Only what this commit wrote stays in a file written again.
            .and_then(|()| {
                if old_length > length {
                    f.set_len(length)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| f.sync_data())
            .and_then(|()| sync_dir(&self.dir));
        if let Err(e) = written {
            self.remove(file);
            return Err(e);
        }
        let mut start = 0;
        Ok(contents
            .iter()
            .map(|c| {
                let at = Location {
                    file,
                    start,
                    length: c.len() as i64,
                };
                start += at.length;
                at
            })
            .collect())
    }

    /// The number a new file tries first.
    fn first_number(&self) -> i64 {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        self.next.load(Ordering::Relaxed).max(clock)
    }

    /// `file` is this process's, of a number now taken.
    fn taken(&self, file: i64) {
        self.next.store(file + 1, Ordering::Relaxed);
        self.settled.lock().expect("spool files").insert(file);
    }

    /// A new file of a number no other has.
    fn create(&self) -> io::Result<(i64, File)> {
        let mut file = self.first_number();
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.path(file))
            {
                Ok(f) => {
                    self.taken(file);
                    return Ok((file, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => file += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The newest dead file kept to be written again, under a number no
    /// other has (a new name first, so a reader of the old one sees the
    /// change before any new byte), opened to write from its start, with
    /// its length. None when none is kept or taking it fails (another
    /// process removed it); the caller creates a file then.
    fn reuse(&self) -> Option<(i64, File, u64)> {
        let Free {
            file: old, bytes, ..
        } = self.free.lock().expect("spool files").pop()?;
        self.settled.lock().expect("spool files").remove(&old);
        let mut file = self.first_number();
        // A hard link, not a rename: a rename would replace a file another
        // process just made under that number.
        loop {
            match std::fs::hard_link(self.path(old), self.path(file)) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => file += 1,
                Err(e) => {
                    tracing::debug!(file = old, error = %e, "cannot write a dead spool file again");
                    self.remove(old);
                    return None;
                }
            }
        }
        self.taken(file);
        let opened = std::fs::remove_file(self.path(old))
            .and_then(|()| OpenOptions::new().write(true).open(self.path(file)));
        match opened {
            Ok(f) => Some((file, f, bytes)),
            Err(e) => {
                tracing::debug!(file, error = %e, "cannot write a dead spool file again");
                self.remove(old);
                self.remove(file);
                None
            }
        }
    }

    /// The content at `at`. `NotFound` when its file is gone or was given
    /// a new number to be written again (every message in it was purged
    /// or moved since `at` was read).
    pub(crate) fn read(&self, at: Location) -> io::Result<Vec<u8>> {
        self.read_opened(at, File::open(self.path(at.file))?)
    }

    /// [`Spool::read`] from the file opened under `at`'s name.
    fn read_opened(&self, at: Location, mut f: File) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let path = self.path(at.file);
        f.seek(SeekFrom::Start(at.start as u64))?;
        // Read into the vector's spare room, not a zeroed copy first.
        let length = at.length as usize;
        let mut content = Vec::with_capacity(length);
        (&mut f).take(length as u64).read_to_end(&mut content)?;
        // Still under its name after the read, so not renamed before it,
        // so not written again (nor cut short) before it (see `reuse`).
        let (read, named) = (f.metadata()?, std::fs::metadata(&path)?);
        if (read.dev(), read.ino()) != (named.dev(), named.ino()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("spool file {} was written again while read", at.file),
            ));
        }
        if content.len() < length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("spool file {} ends inside a content", at.file),
            ));
        }
        Ok(content)
    }

    /// The files in the spool, by number (anything else there is left alone).
    pub(crate) fn files(&self) -> io::Result<Vec<i64>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(n) = name.to_str().and_then(|s| s.parse::<i64>().ok()) {
                files.push(n);
            }
        }
        Ok(files)
    }

    /// The size of `file` and how long ago it was written.
    pub(crate) fn size_and_age(&self, file: i64) -> io::Result<(u64, std::time::Duration)> {
        let meta = std::fs::metadata(self.path(file))?;
        let age = meta.modified()?.elapsed().unwrap_or_default();
        Ok((meta.len(), age))
    }

    /// Remove `file` (gone already is fine).
    pub(crate) fn remove(&self, file: i64) {
        self.settled.lock().expect("spool files").remove(&file);
        self.free
            .lock()
            .expect("spool files")
            .retain(|f| f.file != file);
        match std::fs::remove_file(self.path(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file, error = %e, "cannot remove a spool file"),
        }
    }

    /// Deal with the files not in `in_use` (the files rows point into,
    /// read after the last commit): settled ones are kept to be written
    /// again while there is room ([`FREE_FILES`], [`FREE_BYTES`]) and
    /// removed once kept [`FREE_AGE`] or when there is none (only the
    /// writer thread calls this, between its commits, so none of its own
    /// is being written), any other is removed once [`ORPHAN_AGE`] old.
    /// How many it removed.
    pub(crate) fn sweep(&self, in_use: &[i64]) -> io::Result<usize> {
        self.sweep_at(in_use, Instant::now())
    }

    fn sweep_at(&self, in_use: &[i64], now: Instant) -> io::Result<usize> {
        let in_use: HashSet<i64> = in_use.iter().copied().collect();
        self.settled
            .lock()
            .expect("spool files")
            .extend(in_use.iter().copied());
        let expired: Vec<i64> = self
            .free
            .lock()
            .expect("spool files")
            .iter()
            .filter(|f| now.saturating_duration_since(f.since) >= FREE_AGE)
            .map(|f| f.file)
            .collect();
        let mut removed = 0;
        for file in expired {
            self.remove(file);
            removed += 1;
        }
        for file in self.files()? {
            if in_use.contains(&file) {
                continue;
            }
            let settled = self.settled.lock().expect("spool files").contains(&file);
            if settled {
                if !self.keep_free(file, now) {
                    self.remove(file);
                    removed += 1;
                }
            } else if self
                .size_and_age(file)
                .is_ok_and(|(_, age)| age >= ORPHAN_AGE)
            {
                self.remove(file);
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Keep the dead `file` to be written again (true), or say there is
    /// no room for it (false).
    fn keep_free(&self, file: i64, now: Instant) -> bool {
        let mut free = self.free.lock().expect("spool files");
        if free.iter().any(|f| f.file == file) {
            return true;
        }
        let Ok(meta) = std::fs::metadata(self.path(file)) else {
            return false;
        };
        let held: u64 = free.iter().map(|f| f.bytes).sum();
        if free.len() >= FREE_FILES || held + meta.len() > FREE_BYTES {
            return false;
        }
        free.push(Free {
            file,
            bytes: meta.len(),
            since: now,
        });
        true
    }
}

/// All of `parts`, one `writev` for as many as it takes.
fn write_all(f: &mut File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    // Skip empty leading slices so a zero-byte write means no progress.
    io::IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match f.write_vectored(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Make the directory's entries (a new file's name) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode(spool: &Spool, file: i64) -> u64 {
        std::fs::metadata(spool.path(file)).unwrap().ino()
    }

    #[test]
    fn contents_come_back_where_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = vec![b'a'; 40_000];
        let b = vec![b'b'; 70_000];
        let at = spool.write(&[&a, &b]).unwrap();
        assert_eq!(at[0].file, at[1].file);
        assert_eq!(spool.read(at[0]).unwrap(), a);
        assert_eq!(spool.read(at[1]).unwrap(), b);
        let next = spool.write(&[&b]).unwrap();
        assert_ne!(next[0].file, at[0].file);
        // Another process on the same spool: its numbers do not collide.
        let other = Spool::open(dir.path()).unwrap();
        let third = other.write(&[&a]).unwrap();
        assert!(![at[0].file, next[0].file].contains(&third[0].file));
        // A sweep keeps its own files no row points into, to write them
        // again, and leaves another process's young ones (they may be
        // about to commit) unless it saw rows point into them before.
        let now = Instant::now();
        assert_eq!(spool.sweep_at(&[at[0].file], now).unwrap(), 0);
        let mut left = spool.files().unwrap();
        left.sort();
        let mut expected = vec![at[0].file, next[0].file, third[0].file];
        expected.sort();
        assert_eq!(left, expected);
        // Once kept FREE_AGE, a dead file goes.
        assert_eq!(spool.sweep_at(&[at[0].file], now + FREE_AGE).unwrap(), 1);
        let gone = spool.read(next[0]).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::NotFound);
        // Once old, another's file no row points into is an orphan.
        let old = std::time::SystemTime::now() - ORPHAN_AGE;
        File::options()
            .write(true)
            .open(spool.path(third[0].file))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(spool.sweep(&[at[0].file]).unwrap(), 1);
        assert_eq!(spool.files().unwrap(), vec![at[0].file]);
    }

    #[test]
    fn a_dead_file_is_written_again_under_a_new_number() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = vec![b'a'; 90_000];
        let b = vec![b'b'; 40_000];
        let first = spool.write(&[&a, &a]).unwrap();
        let first_inode = inode(&spool, first[0].file);
        // No row points into it: kept, still readable where it was.
        assert_eq!(spool.sweep(&[]).unwrap(), 0);
        assert_eq!(spool.read(first[1]).unwrap(), a);
        // The next write takes it: a new number, the same file, cut to
        // what was written; the old number is gone.
        let second = spool.write(&[&b]).unwrap();
        assert_ne!(second[0].file, first[0].file);
        assert_eq!(inode(&spool, second[0].file), first_inode);
        assert_eq!(spool.files().unwrap(), vec![second[0].file]);
        assert_eq!(
            std::fs::metadata(spool.path(second[0].file)).unwrap().len(),
            b.len() as u64
        );
        assert_eq!(spool.read(second[0]).unwrap(), b);
        for at in first {
            assert_eq!(spool.read(at).unwrap_err().kind(), io::ErrorKind::NotFound);
        }
        // A longer content grows it.
        assert_eq!(spool.sweep(&[]).unwrap(), 0);
        let third = spool.write(&[&a, &b, &a]).unwrap();
        assert_eq!(inode(&spool, third[0].file), first_inode);
        assert_eq!(spool.read(third[2]).unwrap(), a);
        assert_eq!(spool.read(third[1]).unwrap(), b);
        // Kept files are bounded: past FREE_FILES, dead files go.
        for _ in 0..FREE_FILES + 3 {
            spool.create().unwrap();
        }
        assert_eq!(spool.sweep(&[third[0].file]).unwrap(), 3);
        assert_eq!(spool.files().unwrap().len(), FREE_FILES + 1);
    }

    #[test]
    fn a_reader_of_a_file_taken_again_is_told_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = vec![b'a'; 50_000];
        let at = spool.write(&[&a]).unwrap()[0];
        // Two readers opened it; then it died and was taken again.
        let mut opened = File::open(spool.path(at.file)).unwrap();
        let reader = File::open(spool.path(at.file)).unwrap();
        spool.sweep(&[]).unwrap();
        let again = spool.write(&[&vec![b'z'; 30_000]]).unwrap()[0];
        assert_ne!(again.file, at.file);
        // The bytes it holds now are another content...
        let mut stale = Vec::new();
        opened.read_to_end(&mut stale).unwrap();
        assert_eq!(stale, vec![b'z'; 30_000]);
        // ...which a read finds out after reading (the name is gone),
        // before it would say the file ends too soon.
        let told = spool.read_opened(at, reader).unwrap_err();
        assert_eq!(told.kind(), io::ErrorKind::NotFound, "{told}");
        // Opened now, the old name is simply gone.
        assert_eq!(spool.read(at).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(spool.read(again).unwrap(), vec![b'z'; 30_000]);
    }
}
