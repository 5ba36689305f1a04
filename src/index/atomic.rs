//! Crash-safe file replacement: write a temp file, fsync it, rename it over the target, fsync
//! the folder.
//!
//! Owns the only code that puts files into a served layout or a state folder. Temp files are
//! created in a folder the caller names, which must be on the same file system as the target
//! and never part of what a server is asked for. Everything it writes is public (signed,
//! served content and state that holds no secret), so files get the usual mode under the
//! umask, `0666 & !umask` (`0644` typically): a copy made with `rsync -a` or `cp -a` stays
//! readable by a web server running as another user. Secret keys are written by `keys` only,
//! with mode `0600`. It never decides what to write.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;

use tempfile::NamedTempFile;

/// The mode public files are created with, before the umask: what `touch` or a shell redirect
/// would give.
#[cfg(unix)]
const PUBLIC_MODE: u32 = 0o666;

/// A temp file in `dir` for content that will be published or served: created with the usual
/// mode under the umask, not tempfile's private `0600` default.
pub(crate) fn public_temp_file(dir: &Path) -> io::Result<NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        // Passed to open(2), so the umask applies.
        builder.permissions(std::fs::Permissions::from_mode(PUBLIC_MODE));
    }
    builder.tempfile_in(dir)
}

/// Atomically replaces (or creates) `dest` with `bytes`, via a temp file in `tmp_dir`.
pub(crate) fn write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = public_temp_file(tmp_dir)?;
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

/// Creates `dest` holding `bytes` unless it already exists (`Ok(false)`), flushing the data
/// before the file gets its name, so that after a crash `dest` is absent or complete, never
/// partial. `dest`'s folder is left unflushed: the caller flushes it (once, for many files)
/// before anything that depends on `dest` is written.
///
/// On Linux the file is born nameless in `dest`'s folder (`O_TMPFILE`) and linked into place,
/// so no temp name is ever created or removed; where the file system lacks that, a temp file in
/// `tmp_dir` is hard-linked instead (a link, unlike a rename, refuses to replace).
pub(crate) fn create_new_synced(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    if let Some(placed) = nameless::create(dest, bytes)? {
        return Ok(placed);
    }
    let mut tmp = public_temp_file(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    link_new(tmp.path(), dest)
}

fn link_new(from: &Path, dest: &Path) -> io::Result<bool> {
    match std::fs::hard_link(from, dest) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(target_os = "linux")]
mod nameless {
    use std::ffi::CString;
    use std::fs::OpenOptions;
    use std::io::{self, Write as _};
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::io::AsRawFd as _;
    use std::path::Path;

    /// `None` when the file system (or a missing `/proc`) does not allow a nameless file.
    pub(super) fn create(dest: &Path, bytes: &[u8]) -> io::Result<Option<bool>> {
        let Some(dir) = dest.parent() else {
            return Ok(None);
        };
        let opened = OpenOptions::new()
            .write(true)
            .mode(super::PUBLIC_MODE)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        let mut file = match opened {
            Ok(f) => f,
            Err(e) if unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        file.write_all(bytes)?;
        file.sync_data()?;
        let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = CString::new(dest.as_os_str().as_bytes())?;
        // SAFETY: both are valid NUL-terminated paths that outlive the call.
        let linked = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if linked == 0 {
            return Ok(Some(true));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(Some(false)),
            // No /proc: the caller writes through a named temp file instead.
            io::ErrorKind::NotFound if !Path::new("/proc/self/fd").is_dir() => Ok(None),
            _ => Err(e),
        }
    }

    fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
        )
    }
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

    #[test]
    fn create_new_keeps_the_first_file_and_leaves_no_temp_behind() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let dest = dir.path().join("x.zip");
        assert!(create_new_synced(&tmp, &dest, b"one").unwrap());
        assert!(!create_new_synced(&tmp, &dest, b"two").unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "tmp and x.zip"
        );
    }

    #[test]
    fn the_named_temp_file_fallback_also_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        assert!(!link_new(&a, &b).unwrap());
        assert_eq!(std::fs::read(&b).unwrap(), b"b");
        assert!(link_new(&a, &dir.path().join("c")).unwrap());
    }
}
