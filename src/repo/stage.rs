//! Bringing an input bundle into the repo: copy once into the private temp folder while
//! hashing, verify that copy, and only later rename it to `bundles/<sha256>.zip`.
//!
//! Owns the rule that what is served is exactly what was verified (the temp copy, never the
//! input path again). It never writes into the served layout except by rename of a verified
//! copy, and never rereads or rehashes a bundle already stored.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::bundle::{self, VerifiedBundle};
use crate::content_id::{ContentId, HashingReader};
use crate::index::chunks::{ChunkHasher, ChunkList};
use crate::index::{atomic, ObjectRef};
use crate::keys::{minisig, Trusted};
use crate::limits::BundleLimits;
use crate::repo::RepoError;

/// Largest `FILE.zip.minisig` copied beside a bundle. A minisign signature file is ~300 bytes;
/// 4 KiB leaves room for a long trusted comment.
const MAX_MINISIG_BYTES: u64 = 4096;

/// An input bundle copied into the temp folder and verified against the publisher's key.
#[derive(Debug)]
pub(crate) struct StagedBundle {
    pub object: ObjectRef,
    /// The bundle's chunk list, for a bundle above the chunk threshold.
    pub chunks: Option<ChunkList>,
    pub verified: VerifiedBundle,
    zip: NamedTempFile,
    minisig: Option<NamedTempFile>,
}

/// Copies `input` (and `input.minisig` if present) into `tmp_dir`, hashing and verifying it
/// with `publisher`'s key as it copies.
pub(crate) fn stage(
    input: &Path,
    tmp_dir: &Path,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<StagedBundle, RepoError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| RepoError::Io { path, source }
    };
    let file = File::open(input).map_err(io_err(input))?;
    let zip = atomic::public_temp_file(tmp_dir).map_err(io_err(tmp_dir))?;
    // One pass over the input: the verifier reads the stream while it is hashed and copied,
    // so the stored copy is byte for byte what was verified.
    let mut tee = Tee {
        inner: HashingReader::new(file.take(limits.max_bundle_bytes + 1)),
        copy: zip,
        chunks: ChunkHasher::new(),
    };
    let verified =
        bundle::verify_reader(&mut tee, publisher, limits).map_err(|source| RepoError::Bundle {
            path: input.to_owned(),
            source,
        })?;
    io::copy(&mut tee, &mut io::sink()).map_err(io_err(input))?;
    let Tee {
        inner,
        copy: zip,
        chunks,
    } = tee;
    let (sha256, size) = inner.finish();
    if size > limits.max_bundle_bytes {
        return Err(RepoError::BundleTooLarge {
            path: input.to_owned(),
            limit: limits.max_bundle_bytes,
        });
    }
    let minisig = stage_minisig(input, zip.path(), tmp_dir, publisher)?;
    Ok(StagedBundle {
        object: ObjectRef { sha256, size },
        chunks: chunks.finish(sha256),
        verified,
        zip,
        minisig,
    })
}

/// A reader that writes every byte it hands out into `copy`, and hashes it into chunks.
struct Tee<R> {
    inner: R,
    copy: NamedTempFile,
    chunks: ChunkHasher,
}

impl<R: io::Read> io::Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.chunks.update(&buf[..n]);
        Ok(n)
    }
}

/// Copies `input.minisig`, if there is one, after checking it signs the staged copy with the
/// publisher's key: a stored signature file that fails `minisign -V` would look like forgery.
/// This reads the bundle a second time (minisign hashes the whole file with BLAKE2b).
fn stage_minisig(
    input: &Path,
    staged_zip: &Path,
    tmp_dir: &Path,
    publisher: &(impl Trusted + ?Sized),
) -> Result<Option<NamedTempFile>, RepoError> {
    let mut path = input.as_os_str().to_owned();
    path.push(".minisig");
    let path = PathBuf::from(path);
    let io_err = |p: &Path| {
        let p = p.to_owned();
        move |source| RepoError::Io { path: p, source }
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RepoError::Io { path, source }),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MINISIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(&path))?;
    if bytes.len() as u64 > MAX_MINISIG_BYTES {
        return Err(RepoError::MinisigTooLarge {
            path,
            limit: MAX_MINISIG_BYTES,
        });
    }
    let text = String::from_utf8_lossy(&bytes);
    let zip = File::open(staged_zip).map_err(io_err(staged_zip))?;
    minisig::verify_file(publisher, zip, &text).map_err(|source| RepoError::Minisig {
        path: path.clone(),
        source,
    })?;
    let mut tmp = atomic::public_temp_file(tmp_dir).map_err(io_err(tmp_dir))?;
    tmp.write_all(&bytes).map_err(io_err(tmp_dir))?;
    Ok(Some(tmp))
}

impl StagedBundle {
    pub fn sha256(&self) -> ContentId {
        self.object.sha256
    }

    /// Renames the verified copy (and its minisig) into place, unless a bundle with this
    /// sha256 is already stored: then the stored one is kept untouched (same bytes by name).
    pub fn persist(self, zip_dest: &Path, minisig_dest: &Path) -> Result<(), RepoError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| RepoError::Io { path, source }
        };
        if let Some(minisig) = self.minisig {
            if !minisig_dest.exists() {
                atomic::persist(minisig, minisig_dest).map_err(io_err(minisig_dest))?;
            }
        }
        if !zip_dest.exists() {
            atomic::persist(self.zip, zip_dest).map_err(io_err(zip_dest))?;
        }
        Ok(())
    }
}
