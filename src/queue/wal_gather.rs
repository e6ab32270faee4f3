//! An SQLite VFS that hands a commit's WAL frames to the kernel in one write instead of two per page.
//!
//! SQLite writes each WAL frame as two calls (its 24-byte header, then the page), so a commit of
//! 25 webhooks, touching ~50 pages, makes ~100 `pwrite` calls before its fsync: in the intake
//! bench, a tenth of the service's CPU. This VFS wraps the platform's default one and changes only
//! the WAL file: writes that continue one another are gathered in memory and written as one call
//! when SQLite syncs, reads, truncates, asks the size, or closes the file (or after `FLUSH_AT`
//! bytes). Every other file (the database, temporary files) is opened by the default VFS itself,
//! with its own methods, and costs nothing extra.
//!
//! Why this keeps SQLite's guarantees: the writes reach the file in the order SQLite made them, and
//! all of them before any sync, read or size check of that file; only their timing moves. With
//! `synchronous = FULL` a commit syncs the WAL before it updates the WAL index, so no other
//! connection can look for a frame that is still in the buffer; `durable_wal` therefore sets the
//! VFS, the WAL journal and FULL together, and is the only way the service selects the VFS. A
//! failed gathered write fails the sync that flushes it, so the commit fails and nobody is answered;
//! the unwritten bytes stay gathered, so no later sync can succeed over the hole they would leave.
//! Each file handle belongs to one connection, which SQLite never uses from two threads at once.
//!
//! The callbacks never unwrap or panic: a method the default VFS lacks, or an allocation that fails,
//! is answered with the matching SQLite error code, and each body runs under `guarded`, so even an
//! unforeseen panic becomes an I/O error instead of unwinding into SQLite's C frames (which would
//! abort the process). The store reads back the journal mode and `synchronous` at start and refuses
//! to run unless they are WAL and FULL (`queue::store::check_durable`).

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

/// The VFS name to give `SqliteConnectOptions::vfs`.
pub const NAME: &CStr = c"wal-gather";

/// Gathered bytes that are written at once, sync or not: bounds the buffer for a huge transaction.
const FLUSH_AT: usize = 4 << 20;

/// `opts` with the WAL journal, `synchronous = FULL` and this VFS: the three belong together, since
/// the VFS is only safe when every commit syncs the WAL (see the module's notes).
pub fn durable_wal(opts: SqliteConnectOptions) -> Result<SqliteConnectOptions, String> {
    Ok(opts.vfs(register()?).journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Full))
}

/// Registers the VFS once per process (not as the default); returns its name, or why it could not.
pub fn register() -> Result<&'static str, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED.get_or_init(|| unsafe { register_once() }).clone()?;
    NAME.to_str().map_err(|e| format!("the VFS name is not UTF-8: {e}"))
}

/// Runs a callback's body. Nothing in them is expected to panic; if something does, SQLite gets
/// `code` (the call's I/O error) instead of an unwind into its C frames, which would abort.
fn guarded(code: c_int, body: impl FnOnce() -> c_int) -> c_int {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(code)
}

unsafe fn register_once() -> Result<(), String> {
    unsafe {
        if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
            return Err("SQLite could not be initialised".into());
        }
        let base = ffi::sqlite3_vfs_find(std::ptr::null());
        if base.is_null() {
            return Err("SQLite has no default VFS".into());
        }
        // A copy of the default VFS (same app data, path length and helpers, which its functions
        // read through the pointer they are given) with our `xOpen` and room for our file header.
        let mut vfs = *base;
        vfs.pNext = std::ptr::null_mut();
        vfs.zName = NAME.as_ptr();
        vfs.szOsFile = (REAL_OFFSET + (*base).szOsFile as usize) as c_int;
        vfs.xOpen = Some(open);
        BASE.set(SendPtr(base)).map_err(|_| "registered twice".to_string())?;
        // SQLite keeps the pointer for the life of the process.
        let vfs = Box::leak(Box::new(vfs));
        match ffi::sqlite3_vfs_register(vfs, 0) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("SQLite refused the {NAME:?} VFS (code {rc})")),
        }
    }
}

/// The default VFS this one wraps.
static BASE: OnceLock<SendPtr> = OnceLock::new();

struct SendPtr(*mut ffi::sqlite3_vfs);
// SAFETY: the default VFS is a static SQLite object, safe to use from any thread.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// A WAL file: SQLite's file header (our methods), the gathered writes, and the default VFS's own
/// file object, which lives in the same allocation at `REAL_OFFSET`.
#[repr(C)]
struct GatherFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    pending: Vec<u8>,
    /// File offset of `pending[0]`.
    pending_at: i64,
}

const REAL_OFFSET: usize = std::mem::size_of::<GatherFile>().next_multiple_of(16);

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guarded(ffi::SQLITE_CANTOPEN, || unsafe { open_file(name, file, flags, out_flags) })
}

unsafe fn open_file(
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        // A failed open leaves no methods, so SQLite does not close what was never opened.
        (*file).pMethods = std::ptr::null();
        // Both are there once the VFS is registered (`register_once` sets BASE first).
        let Some(base) = BASE.get().map(|b| b.0) else { return ffi::SQLITE_CANTOPEN };
        let Some(base_open) = (*base).xOpen else { return ffi::SQLITE_CANTOPEN };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL: the default VFS's file, methods and all, in our (larger) slot.
            return base_open(base, name, file, flags, out_flags);
        }
        let real = file.cast::<u8>().add(REAL_OFFSET).cast::<ffi::sqlite3_file>();
        let rc = base_open(base, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
            // SQLite does not close a file whose open failed when its methods pointer is null, so a
            // half-opened file of the default VFS is closed here.
            if let Some(close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
                close(real);
            }
            (*file).pMethods = std::ptr::null();
            return if rc == ffi::SQLITE_OK { ffi::SQLITE_CANTOPEN } else { rc };
        }
        file.cast::<GatherFile>().write(GatherFile {
            base: ffi::sqlite3_file { pMethods: &METHODS },
            real,
            pending: Vec::new(),
            pending_at: 0,
        });
        ffi::SQLITE_OK
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: a WAL file needs no shared memory or memory mapping of its own.
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Our file, and the default VFS's methods for its own.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut GatherFile, &'a ffi::sqlite3_io_methods) {
    unsafe {
        let gather = &mut *file.cast::<GatherFile>();
        let methods = &*(*gather.real).pMethods;
        (gather, methods)
    }
}

/// The most one write hands the default VFS: the Unix one writes at most 128 KiB - 1 bytes per call
/// and reports a longer write as a full disk.
const WRITE_MAX: usize = 124 << 10;

/// Buffer capacity a WAL file keeps between commits.
const KEEP_CAPACITY: usize = 1 << 20;

/// Writes what has gathered, in as few calls as the default VFS takes. What a failed call left
/// unwritten stays gathered: SQLite was told those writes succeeded, so every later flush (the
/// commit's sync at the latest) tries them again and fails as long as they fail, instead of
/// syncing a WAL with a hole in it.
unsafe fn flush(gather: &mut GatherFile, methods: &ffi::sqlite3_io_methods) -> c_int {
    if gather.pending.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = methods.xWrite else { return ffi::SQLITE_IOERR_WRITE };
    let mut written = 0;
    for chunk in gather.pending.chunks(WRITE_MAX) {
        let offset = gather.pending_at + written as i64;
        let rc = unsafe { write(gather.real, chunk.as_ptr().cast::<c_void>(), chunk.len() as c_int, offset) };
        if rc != ffi::SQLITE_OK {
            gather.pending.drain(..written);
            gather.pending_at += written as i64;
            return rc;
        }
        written += chunk.len();
    }
    gather.pending.clear();
    // A commit of the intake needs well under this; what one huge transaction grew is given back.
    gather.pending.shrink_to(KEEP_CAPACITY);
    ffi::SQLITE_OK
}

/// Runs `then` on the default VFS's file, with its methods.
unsafe fn on_real(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    unsafe {
        let (gather, methods) = parts(file);
        then(gather.real, methods)
    }
}

/// Flushes, then runs `then` on the default VFS's file (`on_real`).
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    unsafe {
        let (gather, methods) = parts(file);
        match flush(gather, methods) {
            ffi::SQLITE_OK => on_real(file, then),
            rc => rc,
        }
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    guarded(ffi::SQLITE_IOERR_CLOSE, || unsafe {
        let (gather, methods) = parts(file);
        let flushed = flush(gather, methods);
        let closed = methods.xClose.map_or(ffi::SQLITE_IOERR_CLOSE, |close| close(gather.real));
        std::ptr::drop_in_place(&mut gather.pending);
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    })
}

unsafe extern "C" fn write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    guarded(ffi::SQLITE_IOERR_WRITE, || unsafe {
        let Ok(amount) = usize::try_from(amount) else { return ffi::SQLITE_IOERR_WRITE };
        if data.is_null() && amount > 0 {
            return ffi::SQLITE_IOERR_WRITE;
        }
        let (gather, methods) = parts(file);
        let continues = gather.pending_at.checked_add(gather.pending.len() as i64) == Some(offset);
        if !gather.pending.is_empty() && !continues {
            let rc = flush(gather, methods);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if gather.pending.is_empty() {
            gather.pending_at = offset;
        }
        // Out of memory is an I/O error SQLite knows, not an abort of the process.
        if gather.pending.try_reserve(amount).is_err() {
            return ffi::SQLITE_IOERR_NOMEM;
        }
        if amount > 0 {
            gather.pending.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), amount));
        }
        if gather.pending.len() >= FLUSH_AT { flush(gather, methods) } else { ffi::SQLITE_OK }
    })
}

unsafe extern "C" fn read(file: *mut ffi::sqlite3_file, data: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let code = ffi::SQLITE_IOERR_READ;
    guarded(code, || unsafe { flushed(file, |real, m| m.xRead.map_or(code, |f| f(real, data, amount, offset))) })
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    let code = ffi::SQLITE_IOERR_TRUNCATE;
    guarded(code, || unsafe { flushed(file, |real, m| m.xTruncate.map_or(code, |f| f(real, size))) })
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    let code = ffi::SQLITE_IOERR_FSYNC;
    guarded(code, || unsafe { flushed(file, |real, m| m.xSync.map_or(code, |f| f(real, flags))) })
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    let code = ffi::SQLITE_IOERR_FSTAT;
    guarded(code, || unsafe { flushed(file, |real, m| m.xFileSize.map_or(code, |f| f(real, size))) })
}

unsafe extern "C" fn file_control(file: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    guarded(ffi::SQLITE_IOERR, || unsafe {
        flushed(file, |real, m| m.xFileControl.map_or(ffi::SQLITE_NOTFOUND, |f| f(real, op, arg)))
    })
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let code = ffi::SQLITE_IOERR_LOCK;
    guarded(code, || unsafe { on_real(file, |real, m| m.xLock.map_or(code, |f| f(real, level))) })
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let code = ffi::SQLITE_IOERR_UNLOCK;
    guarded(code, || unsafe { on_real(file, |real, m| m.xUnlock.map_or(code, |f| f(real, level))) })
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let code = ffi::SQLITE_IOERR_CHECKRESERVEDLOCK;
    guarded(code, || unsafe { on_real(file, |real, m| m.xCheckReservedLock.map_or(code, |f| f(real, out))) })
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // No error code to give: the size SQLite assumes for a file that does not say.
    guarded(4096, || unsafe { on_real(file, |real, m| m.xSectorSize.map_or(4096, |f| f(real))) })
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // None claimed: SQLite then assumes the least of the device.
    guarded(0, || unsafe { on_real(file, |real, m| m.xDeviceCharacteristics.map_or(0, |f| f(real))) })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteRow, SqliteSynchronous};
    use sqlx::{ConnectOptions, Connection, FromRow, SqliteConnection};

    use super::ffi;

    async fn open(path: &std::path::Path, gather: bool) -> SqliteConnection {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .unwrap()
            .create_if_missing(true)
            // A small page cache, so that a big transaction spills pages into the WAL before its
            // commit and then writes some of them again: SQLite then rewrites frames in place.
            .pragma("cache_size", "-256");
        let opts = match gather {
            true => super::durable_wal(opts).unwrap(),
            false => opts.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Full),
        };
        opts.connect().await.unwrap()
    }

    async fn fetch<T>(conn: &mut SqliteConnection, sql: &'static str) -> T
    where
        T: for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        sqlx::query_as(sql).fetch_one(conn).await.unwrap()
    }

    #[tokio::test]
    async fn what_a_gathered_commit_wrote_is_read_whole_by_a_connection_without_the_vfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gather.db");
        let mut writer = open(&path, true).await;
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB NOT NULL)").execute(&mut writer).await.unwrap();

        // Small commits (the intake's shape), then one of ~12 MiB (past the flush threshold and
        // many times the largest single write), with rows rewritten and a savepoint rolled back.
        for i in 0..200 {
            sqlx::query("INSERT INTO t VALUES (?, randomblob(300))")
                .bind(format!("small-{i:05}"))
                .execute(&mut writer)
                .await
                .unwrap();
        }
        let mut tx = writer.begin().await.unwrap();
        for i in 0..3000 {
            sqlx::query("INSERT INTO t VALUES (?, randomblob(4000))")
                .bind(format!("big-{:05}", (i * 7919) % 3000))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query("UPDATE t SET v = zeroblob(1000) WHERE k LIKE 'big-%'").execute(&mut *tx).await.unwrap();
        sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
        sqlx::query("DELETE FROM t").execute(&mut *tx).await.unwrap();
        sqlx::query("ROLLBACK TO s").execute(&mut *tx).await.unwrap();
        sqlx::query("RELEASE s").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();

        // The writer stays open (nothing checkpointed or closed): what the reader sees came from
        // the WAL, which the commits flushed before they synced.
        let mut reader = open(&path, false).await;
        let (rows, bytes): (i64, i64) = fetch(&mut reader, "SELECT COUNT(*), SUM(length(v)) FROM t").await;
        assert_eq!((rows, bytes), (3200, 200 * 300 + 3000 * 1000));
        let (zeroed,): (i64,) = fetch(&mut reader, "SELECT COUNT(*) FROM t WHERE v = zeroblob(1000)").await;
        assert_eq!(zeroed, 3000);
        let check: (String,) = fetch(&mut reader, "PRAGMA integrity_check").await;
        assert_eq!(check.0, "ok");

        // And the writer's own reads (its cache is smaller than the table) find the same.
        let (rows, bytes): (i64, i64) = fetch(&mut writer, "SELECT COUNT(*), SUM(length(v)) FROM t").await;
        assert_eq!((rows, bytes), (3200, 200 * 300 + 3000 * 1000));
        writer.close().await.unwrap();
        reader.close().await.unwrap();
    }

    /// A stand-in for the default VFS's file: records writes, fails the next one when told to.
    mod fake {
        use std::cell::RefCell;
        use std::ffi::{c_int, c_void};

        use libsqlite3_sys as ffi;

        thread_local! {
            pub static FAIL_NEXT_WRITE: RefCell<bool> = const { RefCell::new(false) };
            pub static WRITES: RefCell<Vec<(i64, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
        }

        unsafe extern "C" fn write(
            _: *mut ffi::sqlite3_file,
            data: *const c_void,
            amount: c_int,
            offset: i64,
        ) -> c_int {
            if FAIL_NEXT_WRITE.with(|f| f.replace(false)) {
                return ffi::SQLITE_IOERR_WRITE;
            }
            let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), amount as usize) }.to_vec();
            WRITES.with(|w| w.borrow_mut().push((offset, bytes)));
            ffi::SQLITE_OK
        }

        unsafe extern "C" fn sync(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
            ffi::SQLITE_OK
        }

        pub static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
            iVersion: 1,
            xClose: None,
            xRead: None,
            xWrite: Some(write),
            xTruncate: None,
            xSync: Some(sync),
            xFileSize: None,
            xLock: None,
            xUnlock: None,
            xCheckReservedLock: None,
            xFileControl: None,
            xSectorSize: None,
            xDeviceCharacteristics: None,
            xShmMap: None,
            xShmLock: None,
            xShmBarrier: None,
            xShmUnmap: None,
            xFetch: None,
            xUnfetch: None,
        };
    }

    #[test]
    fn a_failed_flush_keeps_the_writes_so_the_sync_fails_until_they_are_on_file() {
        let mut real = ffi::sqlite3_file { pMethods: &fake::METHODS };
        let mut file = super::GatherFile {
            base: ffi::sqlite3_file { pMethods: &super::METHODS },
            real: &mut real,
            pending: Vec::new(),
            pending_at: 0,
        };
        let file_ptr = (&raw mut file).cast::<ffi::sqlite3_file>();
        let (header, page) = ([1u8; 24], [2u8; 64]);
        unsafe {
            assert_eq!(super::write(file_ptr, header.as_ptr().cast(), 24, 4096), ffi::SQLITE_OK);
            assert_eq!(super::write(file_ptr, page.as_ptr().cast(), 64, 4096 + 24), ffi::SQLITE_OK);
            fake::FAIL_NEXT_WRITE.with(|f| *f.borrow_mut() = true);
            assert_eq!(super::sync(file_ptr, ffi::SQLITE_SYNC_FULL), ffi::SQLITE_IOERR_WRITE);
            assert!(fake::WRITES.with(|w| w.borrow().is_empty()));
            // The next sync writes what SQLite was told was written, then syncs.
            assert_eq!(super::sync(file_ptr, ffi::SQLITE_SYNC_FULL), ffi::SQLITE_OK);
        }
        let writes = fake::WRITES.with(|w| w.take());
        assert_eq!(writes, vec![(4096, [header.as_slice(), &page].concat())]);
        assert!(file.pending.is_empty());
    }

    /// A method the default VFS's file lacks, or a write SQLite could not have meant, is answered
    /// with the call's I/O error code: nothing in a callback unwraps or panics.
    #[test]
    fn a_missing_method_or_an_impossible_write_is_an_io_error_not_a_panic() {
        let mut real = ffi::sqlite3_file { pMethods: &fake::METHODS };
        let mut file = super::GatherFile {
            base: ffi::sqlite3_file { pMethods: &super::METHODS },
            real: &mut real,
            pending: Vec::new(),
            pending_at: 0,
        };
        let file_ptr = (&raw mut file).cast::<ffi::sqlite3_file>();
        let mut buf = [0u8; 8];
        let mut size = 0i64;
        let mut out = 0;
        unsafe {
            // The fake file has neither read, truncate, size, locks nor close.
            assert_eq!(super::read(file_ptr, buf.as_mut_ptr().cast(), 8, 0), ffi::SQLITE_IOERR_READ);
            assert_eq!(super::truncate(file_ptr, 0), ffi::SQLITE_IOERR_TRUNCATE);
            assert_eq!(super::file_size(file_ptr, &mut size), ffi::SQLITE_IOERR_FSTAT);
            assert_eq!(super::lock(file_ptr, ffi::SQLITE_LOCK_SHARED), ffi::SQLITE_IOERR_LOCK);
            assert_eq!(super::unlock(file_ptr, ffi::SQLITE_LOCK_NONE), ffi::SQLITE_IOERR_UNLOCK);
            assert_eq!(super::check_reserved_lock(file_ptr, &mut out), ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
            assert_eq!(super::sector_size(file_ptr), 4096);
            assert_eq!(super::device_characteristics(file_ptr), 0);
            assert_eq!(super::file_control(file_ptr, 0, std::ptr::null_mut()), ffi::SQLITE_NOTFOUND);
            assert_eq!(super::write(file_ptr, buf.as_ptr().cast(), -1, 0), ffi::SQLITE_IOERR_WRITE);
            assert_eq!(super::write(file_ptr, std::ptr::null(), 8, 0), ffi::SQLITE_IOERR_WRITE);
            assert!(file.pending.is_empty(), "nothing was taken from an impossible write");
            // A gathered write still reaches the file when the sync flushes it; then the close,
            // which the fake file lacks, is an error and the buffer is freed all the same.
            assert_eq!(super::write(file_ptr, buf.as_ptr().cast(), 8, 0), ffi::SQLITE_OK);
            assert_eq!(super::sync(file_ptr, ffi::SQLITE_SYNC_FULL), ffi::SQLITE_OK);
            assert_eq!(fake::WRITES.with(|w| w.take()), vec![(0, buf.to_vec())]);
            assert_eq!(super::close(file_ptr), ffi::SQLITE_IOERR_CLOSE);
        }
        // The close dropped the buffer in place, as in SQLite's memory; Rust must not drop it again.
        std::mem::forget(file);
    }

    #[test]
    fn a_panic_in_a_callback_body_becomes_its_error_code() {
        let code = super::guarded(ffi::SQLITE_IOERR_FSYNC, || panic!("an unforeseen bug"));
        assert_eq!(code, ffi::SQLITE_IOERR_FSYNC);
        assert_eq!(super::guarded(ffi::SQLITE_IOERR_FSYNC, || ffi::SQLITE_OK), ffi::SQLITE_OK);
    }

    #[test]
    fn registering_again_gives_the_same_vfs() {
        assert_eq!(super::register(), Ok("wal-gather"));
        assert_eq!(super::register(), Ok("wal-gather"));
    }
}
