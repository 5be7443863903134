//! The store writer's SQLite VFS: SQLite's own `unix` VFS, except that a
//! run of writes to the database or its WAL, each starting where the last
//! ended, reaches the file as one `pwrite`.
//!
//! SQLite writes a WAL frame as two writes (its 24-byte header, then the
//! page) and a checkpoint copies pages into the database one write each:
//! about 12 `pwrite`s for a 5 KB message and 80 for a 100 KB one, each a
//! system call whose entry and file-system bookkeeping cost more than the
//! copy (`bench/accept-deliver.sh` under `perf stat`, BENCHMARKS.md).
//! Here a commit's frames and a checkpoint's contiguous pages are kept in
//! a buffer and written together. A checkpoint also reads the WAL a frame
//! at a time, in page order, which for a content's overflow chain is the
//! WAL's order: runs of such reads are read ahead ([`ReadAhead`]).
//!
//! Why the files go through the same states as without it, as far as
//! anyone can tell:
//! - Within the connection: every call on a file other than a write that
//!   continues the run (a read, a sync, its size, a truncation, a lock, a
//!   file control, closing) first writes what is buffered, so SQLite reads
//!   back what it wrote, and a sync covers every write before it.
//! - Other connections and processes learn of new WAL frames only from the
//!   shared memory (the wal-index) and its locks, which are calls on the
//!   database file: before each `xShmLock` and `xShmBarrier` there, the
//!   WAL's buffer is written too. A commit is in the WAL file before it is
//!   published, and frames a rolled-back transaction spilled are written
//!   before the write lock is let go, as SQLite itself would have.
//! - A crash loses only what was not synced, which SQLite already counts
//!   as lost.
//!
//! A write that fails while buffered is reported by the next call that
//! returns a status, where SQLite handles it as the write's failure. With
//! the writer's synchronous = FULL that is the commit's own sync, so the
//! commit fails and its callers hear so; `SQLITE_FULL` stays `SQLITE_FULL`
//! (`tests/disk_full.rs`). Only the writer's connection uses this VFS;
//! the others use `unix` as it is.

use rusqlite::ffi;
use std::ffi::{c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

/// The name connections open the database with.
pub(crate) const NAME: &str = "posthorn-gather";
const NAME_C: &CStr = c"posthorn-gather";
/// Most bytes a file keeps unwritten; a longer run is written in parts.
/// Under 128 KiB: the unix VFS writes at most 0x1ffff bytes a call (it
/// masks the length; `seekAndWriteFd` in sqlite3.c).
const MAX_PENDING: usize = 120 << 10;

/// A database or WAL file: the `unix` VFS's file, in the space SQLite
/// allocated after this struct, and the bytes not yet written to it.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Bytes written by SQLite but not yet to the file, from `offset`.
    pending: Vec<u8>,
    offset: i64,
    /// A failed write of buffered bytes not yet reported (0: none).
    failed: c_int,
    /// The database file: its WAL file, while open. The WAL: null.
    wal: *mut File,
    /// The WAL file: its database file. The database: null.
    db: *mut File,
    /// The WAL while a checkpoint copies it: what was read ahead.
    ahead: Option<ReadAhead>,
}

/// A checkpoint (between the database's `SQLITE_FCNTL_CKPT_START` and
/// `SQLITE_FCNTL_CKPT_DONE`) reads the WAL's frames in page order, which
/// for the pages a commit added (a content's overflow chain) is the WAL's
/// own order, since a commit writes its pages in page order: a read that
/// continues a run of them reads ahead, doubling while the run goes on.
/// What it copies was committed before it began and does not change while
/// it runs (SQLite makes no lock or shared-memory call in between; a write
/// to the WAL, or any `xShmLock` on the database, drops it regardless).
struct ReadAhead {
    /// The WAL's size when the checkpoint began.
    size: i64,
    buf: Vec<u8>,
    offset: i64,
    /// Where the last read ended.
    last_end: i64,
    /// Reads in a row, each continuing the one before.
    run: u32,
    /// How much the next read ahead takes.
    next: usize,
}

impl ReadAhead {
    fn new(size: i64) -> Self {
        ReadAhead {
            size,
            buf: Vec::new(),
            offset: 0,
            last_end: 0,
            run: 0,
            next: FIRST_AHEAD,
        }
    }
}

/// The first read ahead; it doubles up to [`MAX_PENDING`] while the run
/// goes on.
const FIRST_AHEAD: usize = 16 << 10;
/// The most a read may skip (a frame's header) and still continue a run.
const FRAME_GAP: i64 = 64;
/// Reads in a row before reading ahead: a 5 KB content's two pages are
/// not worth a larger read.
const MIN_RUN: u32 = 2;

/// The `unix` VFS, found at registration.
static REAL: OnceLock<usize> = OnceLock::new();
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Register the VFS (once per process); connections then open with
/// [`NAME`].
pub(crate) fn register() -> Result<(), String> {
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find initialises SQLite and returns a VFS
            // that lives as long as the process; the copy registered here
            // is leaked, so it does too.
            unsafe {
                let real = ffi::sqlite3_vfs_find(c"unix".as_ptr());
                if real.is_null() {
                    return Err("SQLite has no unix VFS".to_string());
                }
                REAL.get_or_init(|| real as usize);
                let mut vfs = *real;
                vfs.szOsFile = (std::mem::size_of::<File>() + (*real).szOsFile as usize) as c_int;
                vfs.zName = NAME_C.as_ptr();
                vfs.pNext = ptr::null_mut();
                vfs.xOpen = Some(open);
                let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
                if rc != ffi::SQLITE_OK {
                    return Err(format!("cannot register the {NAME} VFS: SQLite error {rc}"));
                }
                Ok(())
            }
        })
        .clone()
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    *REAL.get().expect("registered before use") as *mut ffi::sqlite3_vfs
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs();
    let real_open = (*real_vfs).xOpen.expect("unix xOpen");
    if flags & (ffi::SQLITE_OPEN_MAIN_DB | ffi::SQLITE_OPEN_WAL) == 0 {
        // Journals and temporary files: the unix VFS's own file, in place.
        return real_open(real_vfs, name, file, flags, out_flags);
    }
    let real = file
        .cast::<u8>()
        .add(std::mem::size_of::<File>())
        .cast::<ffi::sqlite3_file>();
    let rc = real_open(real_vfs, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        // SQLite calls xClose only when pMethods is set: close it here.
        if !(*real).pMethods.is_null() {
            if let Some(close) = (*(*real).pMethods).xClose {
                close(real);
            }
        }
        (*file).pMethods = ptr::null();
        return rc;
    }
    let me = file.cast::<File>();
    ptr::write(
        me,
        File {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            real,
            pending: Vec::new(),
            offset: 0,
            failed: ffi::SQLITE_OK,
            wal: ptr::null_mut(),
            db: ptr::null_mut(),
            ahead: None,
        },
    );
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        let db = ffi::sqlite3_database_file_object(name);
        if !db.is_null() && ptr::eq((*db).pMethods, &METHODS) {
            let db = db.cast::<File>();
            (*db).wal = me;
            (*me).db = db;
        }
    }
    rc
}

/// The unix VFS's method `$m` of `f`'s file.
macro_rules! real {
    ($f:expr, $m:ident) => {
        (*(*(*$f).real).pMethods).$m
    };
}

/// Write what `f` holds; the first failure since the last report, if any.
unsafe fn flush(f: *mut File) -> c_int {
    let f = &mut *f;
    if !f.pending.is_empty() {
        let rc = write_through(f, f.pending.as_ptr(), f.pending.len(), f.offset);
        f.pending.clear();
        if rc != ffi::SQLITE_OK && f.failed == ffi::SQLITE_OK {
            f.failed = rc;
        }
    }
    std::mem::replace(&mut f.failed, ffi::SQLITE_OK)
}

/// [`flush`] where the caller cannot report a failure: kept for the next
/// call that can.
unsafe fn flush_later(f: *mut File) {
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        (*f).failed = rc;
    }
}

/// Write `len` bytes at `offset`, in parts of at most [`MAX_PENDING`].
unsafe fn write_through(f: &File, buf: *const u8, len: usize, offset: i64) -> c_int {
    let Some(write) = (*f.real).pMethods.as_ref().and_then(|m| m.xWrite) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let mut done = 0;
    while done < len {
        let part = (len - done).min(MAX_PENDING);
        #[cfg(test)]
        tests::count(&tests::WRITES);
        let rc = write(
            f.real,
            buf.add(done).cast::<c_void>(),
            part as c_int,
            offset + done as i64,
        );
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        done += part;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let f = file.cast::<File>();
    (*f).ahead = None;
    let len = amount.max(0) as usize;
    let continues = {
        let f = &*f;
        !f.pending.is_empty()
            && f.offset + f.pending.len() as i64 == offset
            && f.pending.len() + len <= MAX_PENDING
    };
    if continues {
        (*f).pending
            .extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
        return ffi::SQLITE_OK;
    }
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    if len >= MAX_PENDING {
        return write_through(&*f, buf.cast::<u8>(), len, offset);
    }
    (*f).offset = offset;
    (*f).pending
        .extend_from_slice(std::slice::from_raw_parts(buf.cast::<u8>(), len));
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file.cast::<File>();
    let flushed = flush(f);
    if !(*f).db.is_null() {
        (*(*f).db).wal = ptr::null_mut();
    }
    if !(*f).wal.is_null() {
        (*(*f).wal).db = ptr::null_mut();
    }
    let real = (*f).real;
    let closed = match real!(f, xClose) {
        Some(close) => close(real),
        None => ffi::SQLITE_OK,
    };
    ptr::drop_in_place(f);
    (*file).pMethods = ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// Methods that write what is buffered, then do what the unix VFS does.
macro_rules! after_flush {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let f = file.cast::<File>();
            let rc = flush(f);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match real!(f, $method) {
                Some(m) => m((*f).real $(, $arg)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

after_flush!(x_truncate_real, xTruncate, (size: i64));
after_flush!(x_sync, xSync, (flags: c_int));
after_flush!(x_file_size, xFileSize, (size: *mut i64));
after_flush!(x_lock, xLock, (level: c_int));
after_flush!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
after_flush!(x_file_control_real, xFileControl, (op: c_int, arg: *mut c_void));
after_flush!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
after_flush!(x_shm_unmap, xShmUnmap, (delete: c_int));
after_flush!(x_fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void));
after_flush!(x_unfetch, xUnfetch, (offset: i64, page: *mut c_void));

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    (*file.cast::<File>()).ahead = None;
    x_truncate_real(file, size)
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let f = file.cast::<File>();
    let rc = flush(f);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let Some(read) = real!(f, xRead) else {
        return ffi::SQLITE_IOERR_READ;
    };
    let len = amount.max(0) as usize;
    let out = buf.cast::<u8>();
    if let Some(ahead) = (*f).ahead.as_mut() {
        let end = offset + len as i64;
        if offset >= ahead.offset && end <= ahead.offset + ahead.buf.len() as i64 {
            let from = (offset - ahead.offset) as usize;
            ptr::copy_nonoverlapping(ahead.buf.as_ptr().add(from), out, len);
            ahead.last_end = end;
            #[cfg(test)]
            tests::count(&tests::AHEAD_HITS);
            return ffi::SQLITE_OK;
        }
        let continues = offset >= ahead.last_end && offset - ahead.last_end <= FRAME_GAP;
        ahead.last_end = end;
        if !continues {
            ahead.run = 0;
            ahead.next = FIRST_AHEAD;
        } else {
            ahead.run += 1;
        }
        if ahead.run >= MIN_RUN && end <= ahead.size {
            let n = (ahead.next.min((ahead.size - offset) as usize)).max(len);
            ahead.next = (ahead.next * 2).min(MAX_PENDING);
            ahead.buf.clear();
            ahead.buf.reserve(n);
            let rc = read((*f).real, ahead.buf.as_mut_ptr().cast(), n as c_int, offset);
            if rc == ffi::SQLITE_OK {
                // SAFETY: the read filled all n bytes.
                ahead.buf.set_len(n);
                ahead.offset = offset;
                ptr::copy_nonoverlapping(ahead.buf.as_ptr(), out, len);
                return ffi::SQLITE_OK;
            }
        }
    }
    read((*f).real, buf, amount, offset)
}

/// File controls; on the database, a checkpoint's start and end turn its
/// WAL's read-ahead on and off.
unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    let f = file.cast::<File>();
    let wal = (*f).wal;
    if !wal.is_null() {
        match op {
            ffi::SQLITE_FCNTL_CKPT_START => {
                let mut size = 0i64;
                if x_file_size(wal.cast(), &mut size) == ffi::SQLITE_OK {
                    (*wal).ahead = Some(ReadAhead::new(size));
                }
            }
            ffi::SQLITE_FCNTL_CKPT_DONE => (*wal).ahead = None,
            _ => {}
        }
    }
    x_file_control_real(file, op, arg)
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let f = file.cast::<File>();
    flush_later(f);
    match real!(f, xUnlock) {
        Some(m) => m((*f).real, level),
        None => ffi::SQLITE_IOERR_UNLOCK,
    }
}

/// Shared-memory locks on the database file: the WAL's frames are
/// written first (see the module's comment).
unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let f = file.cast::<File>();
    if !(*f).wal.is_null() {
        (*(*f).wal).ahead = None;
    }
    for g in [(*f).wal, f] {
        if g.is_null() {
            continue;
        }
        if flags & ffi::SQLITE_SHM_UNLOCK != 0 {
            #[cfg(test)]
            if g != f && !(*g).pending.is_empty() {
                tests::count(&tests::SPILLS_AT_UNLOCK);
            }
            flush_later(g);
        } else {
            let rc = flush(g);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
    }
    match real!(f, xShmLock) {
        Some(m) => m((*f).real, offset, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    let f = file.cast::<File>();
    if !(*f).wal.is_null() {
        flush_later((*f).wal);
    }
    flush_later(f);
    if let Some(m) = real!(f, xShmBarrier) {
        m((*f).real)
    }
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file.cast::<File>();
    real!(f, xSectorSize).map_or(4096, |m| m((*f).real))
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let f = file.cast::<File>();
    real!(f, xDeviceCharacteristics).map_or(0, |m| m((*f).real))
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, Connection, OpenFlags};
    use std::cell::Cell;
    use std::path::Path;

    // Counted on the thread that runs the SQL (each test's own: the
    // store's other tests write on writer threads of their own).
    thread_local! {
        /// Writes that reached the unix VFS through this VFS.
        pub(super) static WRITES: Cell<u64> = const { Cell::new(0) };
        /// Reads a checkpoint took from what was read ahead.
        pub(super) static AHEAD_HITS: Cell<u64> = const { Cell::new(0) };
        /// Times the WAL still held spilled frames when the write lock was
        /// let go.
        pub(super) static SPILLS_AT_UNLOCK: Cell<u64> = const { Cell::new(0) };
    }

    pub(super) fn count(counter: &'static std::thread::LocalKey<Cell<u64>>) {
        counter.with(|c| c.set(c.get() + 1));
    }

    fn read(counter: &'static std::thread::LocalKey<Cell<u64>>) -> u64 {
        counter.with(Cell::get)
    }

    /// A connection as the writer opens one: this VFS, WAL, FULL.
    fn gathering(db: &Path) -> Connection {
        register().unwrap();
        let conn = Connection::open_with_flags_and_vfs(db, OpenFlags::default(), NAME).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn
    }

    /// Another connection, through the unix VFS as it is.
    fn plain(db: &Path) -> Connection {
        let conn = Connection::open(db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    fn blob(n: i64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect()
    }

    fn check(conn: &Connection, rows: &[(i64, usize)]) {
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, rows.len());
        for &(id, len) in rows {
            let b: Vec<u8> = conn
                .query_row("SELECT b FROM t WHERE id = ?", [id], |r| r.get(0))
                .unwrap();
            assert_eq!(b, blob(id, len), "row {id}");
        }
    }

    #[test]
    fn a_commit_is_gathered_and_read_back_by_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = gathering(&db);
        w.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        let before = read(&WRITES);
        let mut rows = Vec::new();
        w.execute_batch("BEGIN").unwrap();
        for id in 0..20i64 {
            w.execute("INSERT INTO t VALUES (?, ?)", params![id, blob(id, 5000)])
                .unwrap();
            rows.push((id, 5000));
        }
        w.execute_batch("COMMIT").unwrap();
        // About 40 pages, 80 writes without gathering; one or two here.
        let writes = read(&WRITES) - before;
        assert!((1..=3).contains(&writes), "{writes} writes");
        check(&plain(&db), &rows);
        check(&w, &rows);
        // A checkpoint writes the database through this VFS too, and
        // reads the WAL's run of overflow pages ahead.
        let hits = read(&AHEAD_HITS);
        w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        assert!(read(&AHEAD_HITS) > hits + 10);
        check(&plain(&db), &rows);
    }

    /// Pages spilled to the WAL by a transaction that then rolls back,
    /// other connections writing in between, a checkpoint, a restarted WAL:
    /// every connection sees every commit, and nothing else.
    #[test]
    fn spills_rollbacks_and_other_writers_keep_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = gathering(&db);
        // A small cache: large transactions spill pages to the WAL.
        w.pragma_update(None, "cache_size", "10").unwrap();
        w.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB)")
            .unwrap();
        let other = plain(&db);
        let spills = read(&SPILLS_AT_UNLOCK);
        let mut rows = Vec::new();
        let mut id = 0i64;
        for round in 0..6i64 {
            // A transaction that spills a few pages (all still in the
            // buffer when it ends), rolled back.
            w.execute_batch("BEGIN").unwrap();
            for n in 0..8i64 {
                w.execute(
                    "INSERT INTO t VALUES (?, ?)",
                    params![1_000_000 + round * 100 + n, blob(n, 8_000)],
                )
                .unwrap();
            }
            w.execute_batch("ROLLBACK").unwrap();
            // Another connection commits where those frames were.
            for _ in 0..3 {
                other
                    .execute("INSERT INTO t VALUES (?, ?)", params![id, blob(id, 3000)])
                    .unwrap();
                rows.push((id, 3000));
                id += 1;
            }
            // A spilling transaction, committed.
            w.execute_batch("BEGIN").unwrap();
            for _ in 0..25 {
                let len = 1000 + (id as usize * 977) % 30_000;
                w.execute("INSERT INTO t VALUES (?, ?)", params![id, blob(id, len)])
                    .unwrap();
                rows.push((id, len));
                id += 1;
            }
            w.execute_batch("COMMIT").unwrap();
            check(&other, &rows);
            if round % 2 == 1 {
                let c = if round == 3 { &other } else { &w };
                c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
                    .unwrap();
            }
        }
        // The case the WAL's flush at xShmLock is for did happen.
        assert!(read(&SPILLS_AT_UNLOCK) > spills);
        check(&w, &rows);
        drop(w);
        drop(other);
        check(&plain(&db), &rows);
    }
}
