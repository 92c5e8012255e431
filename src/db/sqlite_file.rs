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
    path::PathBuf,
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
    OpenOptions::new().write(true).open(&path).map(|_| ()).map_err(|err| {
        format!(
            "the database file {} is read-only ({err}): make it and its directory writable \
             by this user (SQLite also writes the -wal and -shm files beside it)",
            path.display()
        )
    })
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
pub async fn migrating(url: &str) -> Result<Option<File>, String> {
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
}
