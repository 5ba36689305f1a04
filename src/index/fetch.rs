//! Receiving objects whose sha256 and size a signed index gives, from any untrusted source.
//!
//! Owns the download-side checks: the declared size is a hard cap (at most size + 1 bytes are
//! ever read, so an endless stream is cut off), then the size must match exactly, then the
//! sha256. Only after all three does a caller get the bytes or a [`VerifiedObject`]; nothing
//! parses a byte of an object before that. It never trusts a length the source announces.

use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use crate::content_id::ContentId;
use crate::index::atomic;
use crate::index::log::ObjectRef;
use crate::ErrorClass;

/// Why received bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// More bytes arrived than the signed size: an endless-data attack or a wrong object.
    #[error("more than the {limit} bytes the index allows arrived (endless or wrong data)")]
    TooLarge { limit: u64 },
    /// The source ended early.
    #[error("only {actual} of the {expected} bytes the index gives arrived")]
    Truncated { expected: u64, actual: u64 },
    /// The bytes are not the object the index names.
    #[error("sha256 mismatch: the index gives {expected}, the bytes hash to {actual}")]
    HashMismatch {
        expected: ContentId,
        actual: ContentId,
    },
    /// The source failed while reading.
    #[error("reading failed")]
    Read(#[source] io::Error),
    /// A local file could not be written.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    pub fn class(&self) -> ErrorClass {
        match self {
            FetchError::TooLarge { .. }
            | FetchError::Truncated { .. }
            | FetchError::HashMismatch { .. } => ErrorClass::Verification,
            FetchError::Read(_) | FetchError::Io { .. } => ErrorClass::Runtime,
        }
    }
}

/// Counts and hashes chunks against an expected object.
struct Check {
    expected: ObjectRef,
    hasher: Sha256,
    received: u64,
}

impl Check {
    fn new(expected: ObjectRef) -> Self {
        Self {
            expected,
            hasher: Sha256::new(),
            received: 0,
        }
    }

    fn accept(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.received += chunk.len() as u64;
        if self.received > self.expected.size {
            return Err(FetchError::TooLarge {
                limit: self.expected.size,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    fn finish(self) -> Result<(), FetchError> {
        if self.received != self.expected.size {
            return Err(FetchError::Truncated {
                expected: self.expected.size,
                actual: self.received,
            });
        }
        let actual = ContentId::from_digest(self.hasher);
        if actual != self.expected.sha256 {
            return Err(FetchError::HashMismatch {
                expected: self.expected.sha256,
                actual,
            });
        }
        Ok(())
    }
}

/// Collects an object in memory (index pieces): feed chunks, then [`MemoryReceiver::finish`].
pub struct MemoryReceiver {
    check: Check,
    bytes: Vec<u8>,
}

impl MemoryReceiver {
    /// The caller must have bounded `expected.size` (pieces: `IndexLimits::max_piece_bytes`).
    pub fn new(expected: ObjectRef) -> Self {
        Self {
            check: Check::new(expected),
            bytes: Vec::new(),
        }
    }

    pub fn accept(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.check.accept(chunk)?;
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes, once size and sha256 match.
    pub fn finish(self) -> Result<Vec<u8>, FetchError> {
        self.check.finish()?;
        Ok(self.bytes)
    }
}

/// Streams an object into a temp file (bundles): feed chunks, then [`FileReceiver::finish`].
pub struct FileReceiver {
    check: Check,
    file: NamedTempFile,
    dir: PathBuf,
}

impl FileReceiver {
    /// Creates the temp file in `dir`, which should be on the file system of the final place.
    pub fn new(dir: &Path, expected: ObjectRef) -> Result<Self, FetchError> {
        // Linked into a served store when it verifies.
        let file = super::atomic::public_temp_file(dir).map_err(|source| FetchError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            check: Check::new(expected),
            file,
            dir: dir.to_owned(),
        })
    }

    pub fn accept(&mut self, chunk: &[u8]) -> Result<(), FetchError> {
        self.check.accept(chunk)?;
        self.file.write_all(chunk).map_err(|source| FetchError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    pub fn finish(self) -> Result<VerifiedObject, FetchError> {
        let object = self.check.expected;
        self.check.finish()?;
        Ok(VerifiedObject {
            file: self.file,
            object,
        })
    }
}

/// A temp file whose size and sha256 matched the index. Deleted on drop unless persisted.
#[derive(Debug)]
pub struct VerifiedObject {
    file: NamedTempFile,
    object: ObjectRef,
}

impl VerifiedObject {
    /// Where the bytes are now (a temp name).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    pub fn object(&self) -> ObjectRef {
        self.object
    }

    /// Moves the file to `dest` durably (fsync, rename, fsync folder).
    pub fn persist(self, dest: &Path) -> Result<(), FetchError> {
        atomic::persist(self.file, dest).map_err(|source| FetchError::Io {
            path: dest.to_owned(),
            source,
        })
    }
}

/// Reads `reader` until it ends or passes `expected.size` (reading at most size + 1 bytes),
/// into a temp file in `dir`, and checks size and sha256.
pub fn receive_file(
    reader: impl Read,
    dir: &Path,
    expected: ObjectRef,
) -> Result<VerifiedObject, FetchError> {
    let mut receiver = FileReceiver::new(dir, expected)?;
    pump(reader, expected.size, |chunk| receiver.accept(chunk))?;
    receiver.finish()
}

/// Like [`receive_file`], in memory.
pub fn receive_bytes(reader: impl Read, expected: ObjectRef) -> Result<Vec<u8>, FetchError> {
    let mut receiver = MemoryReceiver::new(expected);
    pump(reader, expected.size, |chunk| receiver.accept(chunk))?;
    receiver.finish()
}

/// Checks bytes already in memory against `expected` (size, then sha256).
pub fn check_bytes(bytes: &[u8], expected: ObjectRef) -> Result<(), FetchError> {
    let mut check = Check::new(expected);
    check.accept(bytes)?;
    check.finish()
}

/// Opens a file of a folder mirror (or any folder qasid did not write) for reading, and only
/// if it is a regular file. The open does not block (`O_NONBLOCK`): a FIFO in place of
/// `index.json` would otherwise hang `open` until some writer appears, which is for ever; and
/// `fstat` then refuses FIFOs, devices (`/dev/zero` streams for ever, a terminal blocks),
/// sockets and folders with [`io::ErrorKind::InvalidInput`]. For a regular file the flag
/// changes nothing.
pub fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// The error [`open_regular`] gives for anything but a regular file.
fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a FIFO, device or folder): a folder mirror holds plain files",
    )
}

/// Reads a document of unknown size (a head envelope), refusing more than `limit` bytes.
pub fn read_capped(reader: impl Read, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FetchError::Read)?;
    if bytes.len() as u64 > limit {
        return Err(FetchError::TooLarge { limit });
    }
    Ok(bytes)
}

fn pump(
    reader: impl Read,
    size: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), FetchError>,
) -> Result<(), FetchError> {
    let mut reader = reader.take(size.saturating_add(1));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FetchError::Read(e)),
        };
        sink(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bytes: &[u8]) -> ObjectRef {
        ObjectRef {
            sha256: ContentId::of_bytes(bytes),
            size: bytes.len() as u64,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_or_a_device_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("index.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(open_regular(dir.path()).is_err());
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        assert!(open_regular(&dir.path().join("plain")).is_ok());
    }

    #[test]
    fn exact_bytes_pass() {
        let data = b"hello piece";
        assert_eq!(receive_bytes(&data[..], object(data)).unwrap(), data);
        let dir = tempfile::tempdir().unwrap();
        let v = receive_file(&data[..], dir.path(), object(data)).unwrap();
        assert_eq!(std::fs::read(v.path()).unwrap(), data);
        let dest = dir.path().join("final");
        v.persist(&dest).unwrap();
        assert_eq!(std::fs::read(dest).unwrap(), data);
    }

    #[test]
    fn short_long_and_wrong_bytes_fail_distinctly() {
        let data = b"0123456789";
        let want = object(data);
        assert!(matches!(
            receive_bytes(&data[..9], want),
            Err(FetchError::Truncated {
                expected: 10,
                actual: 9
            })
        ));
        assert!(matches!(
            receive_bytes(&b"0123456789X"[..], want),
            Err(FetchError::TooLarge { limit: 10 })
        ));
        assert!(matches!(
            receive_bytes(&b"0123456780"[..], want),
            Err(FetchError::HashMismatch { .. })
        ));
        assert!(matches!(
            read_capped(&[0u8; 11][..], 10),
            Err(FetchError::TooLarge { limit: 10 })
        ));
    }
}
