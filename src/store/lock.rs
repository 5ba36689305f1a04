//! The store's lock: one `qasid mirror` or `qasid sync` per store at a time.
//!
//! Owns `<store>/.state/lock`, an advisory `flock` taken exclusively and held for the life of
//! the guard. The OS releases it when the process ends, however it ends (even SIGKILL), so a
//! crash never leaves a store locked. Readers of the store (`qasid status`, a web server) never
//! take it.

use std::fs;
use std::path::{Path, PathBuf};

use super::StoreError;

/// The lock file's name in the store's `.state` folder.
pub const LOCK_FILE: &str = "lock";

/// Holds the store's exclusive lock until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: fs::File,
}

impl StoreLock {
    pub(super) fn acquire(root: &Path, state_dir: &Path) -> Result<Self, StoreError> {
        let path: PathBuf = state_dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
                store: root.to_owned(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_store_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = StoreLock::acquire(dir.path(), dir.path()).unwrap();
        let second = StoreLock::acquire(dir.path(), dir.path());
        assert!(
            matches!(second, Err(StoreError::InUse { .. })),
            "{second:?}"
        );
        drop(first);
        StoreLock::acquire(dir.path(), dir.path()).unwrap();
    }
}
