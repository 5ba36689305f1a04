//! Crash-safe file replacement: write a temp file, fsync it, rename it over the target, fsync
//! the folder.
//!
//! Owns the only code that puts files into a served layout or a state folder. Temp files are
//! created in a folder the caller names, which must be on the same file system as the target
//! and never part of what a server is asked for. It never decides what to write.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use tempfile::NamedTempFile;

/// Atomically replaces (or creates) `dest` with `bytes`, via a temp file in `tmp_dir`.
pub(crate) fn write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = NamedTempFile::new_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    persist(tmp, dest)
}

/// Flushes `tmp` to disk, renames it to `dest` and flushes `dest`'s folder, so that after a
/// crash `dest` is either absent, the old file, or the complete new one.
pub(crate) fn persist(tmp: NamedTempFile, dest: &Path) -> io::Result<()> {
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    sync_parent(dest)
}

/// Makes earlier renames into `path`'s folder durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("x.json");
        write(&tmp, &dest, b"one").unwrap();
        write(&tmp, &dest, b"two").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
