//! The SQLite file as a file: whether this process may write it, and which
//! process serves it. One `serve` per file: a second one is refused at
//! start, naming the first (two servers on one file would each see only
//! their own changes live). Migrations take turns: any number of `migrate`
//! runs and starting servers may start at once on a fresh file, and each
//! applies what is left when its turn comes. Both are advisory locks on
//! files beside the database (`<file>.serving`, `<file>.migrating`), which
//! the operating system releases when the process exits, however it exits.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The database file a SQLite URL names (`None`: not SQLite, or in memory).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
}

/// The lock file `suffix` beside the database file.
fn lock_file(database: &std::path::Path, suffix: &str) -> std::io::Result<File> {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(PathBuf::from(name))
}

/// Refuses a SQLite file that exists but cannot be opened for writing (a
/// read-only file or file system), naming why: SQLite would open it
/// read-only without a word, answer reads and fail every write.
pub fn check_writable(url: &str) -> Result<(), String> {
    let Some(path) = sqlite_path(url).filter(|path| path.exists()) else { return Ok(()) };
    open_for_writing(&path).map_err(|err| {
        format!(
            "the database file {} is read-only ({err}): make it and its directory writable \
             by this user (SQLite also writes the -wal and -shm files beside it), or serve it \
             read-only with READ_ONLY=true",
            path.display()
        )
    })
}

/// `url`, for a server that only reads, with `immutable=true` added when
/// its file lies on a read-only file system: nothing can change it there,
/// and SQLite cannot open a WAL file read-only without its -shm file, which
/// a clean shutdown removed and the file system cannot recreate.
pub fn for_reading(url: &str) -> String {
    let read_only_file_system = sqlite_path(url).is_some_and(|path| {
        open_for_writing(&path)
            .is_err_and(|err| err.kind() == std::io::ErrorKind::ReadOnlyFilesystem)
    });
    if !read_only_file_system {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}immutable=true")
}

fn open_for_writing(path: &Path) -> std::io::Result<()> {
    OpenOptions::new().write(true).open(path).map(|_| ())
}

/// Watches whether a served SQLite file may be written. A file made
/// read-only while the server runs (`chmod`, a file system remounted
/// read-only) is a sign to stop writing: this process's open descriptors
/// could still write it, but its operator said no. While it lasts,
/// mutations answer `SERVICE_UNAVAILABLE` with reason `READ_ONLY` and
/// `/readyz` fails; once the file is writable again, writes resume.
///
/// SQLite also opens a file it may not write read-only without a word,
/// and such a connection stays read-only after the file is writable
/// again; so connections opened before the file was last seen read-only,
/// or before it was seen writable again, are closed on their way in or
/// out of the pool, and fresh ones open the file as it is now.
#[derive(Debug)]
pub struct FileWatch {
    started: Instant,
    /// When (milliseconds after `started`) the file was last seen
    /// read-only or seen writable again after that; 0: never.
    mark: AtomicU64,
    read_only: AtomicBool,
}

impl FileWatch {
    /// How often the file's permissions are checked.
    const INTERVAL: Duration = Duration::from_secs(1);

    /// A watch on the file `url` names, checked in the background for as
    /// long as the watch is in use; `None` when `url` names no file.
    pub fn start(url: &str) -> Option<Arc<Self>> {
        let path = sqlite_path(url)?;
        let watch = Arc::new(Self::default());
        tokio::spawn(Self::check(Arc::downgrade(&watch), path));
        Some(watch)
    }

    /// Whether the file was read-only when last checked.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// Whether a connection `age` old was opened before the mark.
    pub(super) fn opened_before_mark(&self, age: Duration) -> bool {
        let mark = self.mark.load(Ordering::Relaxed);
        mark != 0 && self.started.elapsed().saturating_sub(age) <= Duration::from_millis(mark)
    }

    async fn check(watch: Weak<Self>, path: PathBuf) {
        let mut read_only = false;
        loop {
            tokio::time::sleep(Self::INTERVAL).await;
            let Some(watch) = watch.upgrade() else { return };
            let writable = match open_for_writing(&path) {
                Ok(()) => true,
                Err(err) => !matches!(
                    err.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ),
            };
            if !writable || read_only {
                let now = u64::try_from(watch.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                watch.mark.store(now.max(1), Ordering::Relaxed);
            }
            if read_only == writable {
                let path = path.display();
                if writable {
                    tracing::info!(%path, "the database file is writable again: writes resume");
                } else {
                    tracing::warn!(
                        %path,
                        "the database file is read-only: mutations fail with \
                         SERVICE_UNAVAILABLE (READ_ONLY) until it is writable"
                    );
                }
            }
            read_only = !writable;
            watch.read_only.store(read_only, Ordering::Relaxed);
        }
    }
}

impl Default for FileWatch {
    fn default() -> Self {
        Self { started: Instant::now(), mark: AtomicU64::new(0), read_only: AtomicBool::new(false) }
    }
}

/// Held by the process serving a SQLite file, for as long as it serves.
#[derive(Debug)]
pub struct ServingLock {
    _file: File,
}

impl ServingLock {
    /// Takes the file's serving lock for this process (listening on
    /// `addr`), or says which process holds it; `None` for Postgres, where
    /// any number of instances serve one database.
    pub fn take(url: &str, addr: SocketAddr) -> Result<Option<Self>, String> {
        let Some(path) = sqlite_path(url) else { return Ok(None) };
        let cannot = |err: std::io::Error| format!("cannot lock {}: {err}", path.display());
        let mut file = lock_file(&path, ".serving").map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(format!(
                    "another deployql ({}) already serves {}: one process serves a SQLite \
                     file (a second would not see the first's changes live); stop it, or \
                     use Postgres for several instances",
                    holder.trim(),
                    path.display()
                ));
            }
            Err(TryLockError::Error(err)) => return Err(cannot(err)),
        }
        let holder = format!("pid {}, listening on {addr}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(cannot)?;
        Ok(Some(Self { _file: file }))
    }
}

/// Waits for this process's turn to migrate a SQLite file; the turn lasts
/// until the returned lock drops (`None` for Postgres).
pub(super) async fn migrating(url: &str) -> Result<Option<File>, String> {
    let Some(path) = sqlite_path(url) else { return Ok(None) };
    let taken = tokio::task::spawn_blocking(move || {
        let file = lock_file(&path, ".migrating")?;
        file.lock().map(|()| file)
    })
    .await;
    match taken {
        Ok(Ok(file)) => Ok(Some(file)),
        Ok(Err(err)) => Err(format!("cannot take the migration lock: {err}")),
        Err(err) => Err(format!("cannot take the migration lock: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_read_from_sqlite_urls_only() {
        assert_eq!(sqlite_path("sqlite://deployql.db?mode=rwc"), Some("deployql.db".into()));
        assert_eq!(sqlite_path("sqlite:///var/lib/d.db"), Some("/var/lib/d.db".into()));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn connections_opened_before_the_mark_are_closed() {
        let watch = FileWatch::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!watch.opened_before_mark(Duration::from_millis(20)), "no mark yet");
        watch.mark.store(10, Ordering::Relaxed);
        assert!(watch.opened_before_mark(Duration::from_millis(15)), "opened at about 5 ms");
        assert!(!watch.opened_before_mark(Duration::from_millis(1)), "opened after the mark");
    }
}
