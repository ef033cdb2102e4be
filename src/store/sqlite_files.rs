//! The embedded database's files, before SQLite opens them: `DATA_DIR`
//! made private to us, the database file created private (it holds the
//! login-cookie key and ID tokens), and a lock that keeps a second process
//! off the same database.
//!
//! One process owns an SQLite database: its session cache assumes that every
//! logout passes through it, so a second process on the same file (an
//! overlapping redeploy, or `SESSION_STORE_URL` naming another instance's
//! file) would keep logged-out sessions alive there.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::StoreError;

/// The exclusive lock on one SQLite database, held until [`DbLock::release`]
/// or until dropped. A lock file next to the database, `<database>.lock`,
/// locked with `flock`: the operating system releases it when the process
/// ends, however it ends, so a crash leaves nothing stale behind.
#[derive(Debug)]
pub(super) struct DbLock {
    file: Mutex<Option<File>>,
}

impl DbLock {
    /// Lets another process open the database.
    pub(super) fn release(&self) {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(file); // closing the file releases the lock
    }
}

/// Whether a process may open a database that another one holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sharing {
    /// No: a server, whose session cache must see every logout.
    Exclusive,
    /// Yes, without its lock: `oidc-gate sessions`, which tells the holder's
    /// session cache what it ended (see `super::session_cache`). It takes
    /// the lock while nobody holds it, so no server starts under it.
    Alongside,
}

/// Prepares the SQLite database at `path` for this process: creates its
/// directory (mode 0700) and the file (mode 0600; SQLite gives its `-wal`
/// and `-shm` files the database file's mode) if missing, and takes the
/// database's lock, refusing a database that another process holds unless
/// `sharing` allows it.
pub(super) fn prepare(path: &Path, sharing: Sharing) -> Result<DbLock, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        private_dir(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let file_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::DataDir { path, source }
    };
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let lock = private_file(&lock_path, false).map_err(file_error(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) if sharing == Sharing::Alongside => {
            return Ok(DbLock { file: Mutex::new(None) });
        }
        Err(TryLockError::WouldBlock) => {
            return Err(StoreError::InUse {
                database: path.display().to_string(),
            });
        }
        Err(TryLockError::Error(e)) => return Err(file_error(&lock_path)(e)),
    }
    match private_file(path, true) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(file_error(path)(e)),
    }
    Ok(DbLock {
        file: Mutex::new(Some(lock)),
    })
}

/// Creates `dir` and its missing parents, readable by us only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Opens `path` for writing, creating it readable by us only; with `new`,
/// fails if it exists (an existing file keeps its mode).
fn private_file(path: &Path, new: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_held_database_is_refused_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("data/db.sqlite3");
        let first = prepare(&db, Sharing::Exclusive).unwrap();
        assert_eq!(mode(&tmp.path().join("data")), 0o700);
        assert_eq!(mode(&db), 0o600);

        let e = prepare(&db, Sharing::Exclusive).unwrap_err().to_string();
        assert!(e.contains("DATA_DIR") && e.contains(&db.display().to_string()), "{e}");
        first.release();
        let alongside = prepare(&db, Sharing::Alongside).expect("opened alongside the holder");
        drop(alongside);
        let second = prepare(&db, Sharing::Exclusive).unwrap();
        drop(second);
        prepare(&db, Sharing::Exclusive).expect("dropped, released");
    }

    #[test]
    fn an_existing_database_keeps_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db.sqlite3");
        std::fs::write(&db, b"kept").unwrap();
        prepare(&db, Sharing::Exclusive).unwrap();
        assert_eq!(std::fs::read(&db).unwrap(), b"kept");
    }
}
