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
//! kept long keeps only its own commit's file, not everyone's; and a file
//! older than [`COMPACT_AGE`] with less than half of it still pointed at
//! has those contents written to a new file and the rows moved there, in
//! one commit (the writer's `compact`), so a few messages deferred for
//! days do not keep their neighbours' bytes on disk. A reader that finds
//! a file gone looks its row up again once. Small contents ([`SPOOL_MIN`])
//! stay in the database, where one more file and two more syncs a commit
//! would cost more than they save.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Contents at least this long go to the spool.
pub(crate) const SPOOL_MIN: usize = 32 * 1024;

/// How old a spool file must be before its live contents may be moved.
pub(crate) const COMPACT_AGE: std::time::Duration = std::time::Duration::from_secs(600);

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
}

/// How old a file no row points into and that another process wrote must
/// be before a sweep removes it.
pub(crate) const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

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
        }
    }

    /// The path of `file`.
    pub(crate) fn path(&self, file: i64) -> PathBuf {
        self.dir.join(file.to_string())
    }

    /// Write `contents` into a new file, on stable storage when this
    /// returns; where each one is, in their order. A file left behind by
    /// a failure is removed.
    pub(crate) fn write(&self, contents: &[&[u8]]) -> io::Result<Vec<Location>> {
        let (file, mut f) = self.create()?;
        let written = write_all(&mut f, contents)
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

    /// A new file of a number no other has.
    fn create(&self) -> io::Result<(i64, File)> {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let mut file = self.next.load(Ordering::Relaxed).max(clock);
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.path(file))
            {
                Ok(f) => {
                    self.next.store(file + 1, Ordering::Relaxed);
                    self.settled.lock().expect("spool files").insert(file);
                    return Ok((file, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => file += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The content at `at`. `NotFound` when its file is gone (every
    /// message in it was purged since `at` was read).
    pub(crate) fn read(&self, at: Location) -> io::Result<Vec<u8>> {
        let mut f = File::open(self.path(at.file))?;
        f.seek(SeekFrom::Start(at.start as u64))?;
        // Read into the vector's spare room, not a zeroed copy first.
        let length = at.length as usize;
        let mut content = Vec::with_capacity(length);
        f.take(length as u64).read_to_end(&mut content)?;
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
        match std::fs::remove_file(self.path(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file, error = %e, "cannot remove a spool file"),
        }
    }

    /// Remove the files not in `in_use` (the files rows point into, read
    /// after the last commit): settled ones at once (only the writer thread
    /// calls this, between its commits, so none of its own is being
    /// written), any other once [`ORPHAN_AGE`] old.
    pub(crate) fn sweep(&self, in_use: &[i64]) -> io::Result<usize> {
        let in_use: HashSet<i64> = in_use.iter().copied().collect();
        self.settled
            .lock()
            .expect("spool files")
            .extend(in_use.iter().copied());
        let mut removed = 0;
        for file in self.files()? {
            if in_use.contains(&file) {
                continue;
            }
            let settled = self.settled.lock().expect("spool files").contains(&file);
            if settled
                || self
                    .size_and_age(file)
                    .is_ok_and(|(_, age)| age >= ORPHAN_AGE)
            {
                self.remove(file);
                removed += 1;
            }
        }
        Ok(removed)
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
        // A sweep removes its own files no row points into, and leaves
        // another process's young ones (they may be about to commit)
        // unless it saw rows point into them before.
        assert_eq!(spool.sweep(&[at[0].file]).unwrap(), 1);
        let mut left = spool.files().unwrap();
        left.sort();
        assert_eq!(left, vec![at[0].file, third[0].file]);
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
}
