//! Bundle verification: entry order, signature, manifest and per-file checks in one pass.
//!
//! Owns the order of trust: the manifest signature is checked with the caller's key before the
//! manifest JSON is parsed, the manifest is validated before any file is read, and every file is
//! checked against it (name, position, size, ratio, crc32, sha256) while it streams. This is the
//! only place a [`VerifiedBundle`] is built. Files are written only to the output the caller
//! chose (nowhere, memory for `article.md`, or a fresh temporary folder), never elsewhere.

use std::fs::File;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::layout::*;
use super::read::{self, LocalHeader, Next, NextCentral, Source};
use super::{io_at, BundleError, VerifiedBundle};
use crate::content_id::ContentId;
use crate::keys::{Domain, Role, Trusted};
use crate::limits::{BundleLimits, MAX_RENDERED_ARTICLE_BYTES};
use crate::manifest::{EntryName, FileEntry, Manifest, ManifestError, ARTICLE_PATH};

/// Where verified file contents go while they stream.
pub(super) enum Output<'a> {
    /// Nowhere: verification only.
    Discard,
    /// `article.md` into this buffer (capped at [`MAX_RENDERED_ARTICLE_BYTES`]), others nowhere.
    Article(&'a mut Vec<u8>),
    /// Every file under this folder, which must be fresh and empty.
    Folder(&'a Path),
}

/// Verifies a whole bundle from `r`; see the module documentation.
pub(super) fn verify<R: Read>(
    r: R,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
    output: &mut Output<'_>,
) -> Result<VerifiedBundle, BundleError> {
    let mut verifier = Verifier {
        src: Source::new(r, limits.max_bundle_bytes),
        buffer: vec![0u8; BUFFER_SIZE],
        headers: Vec::new(),
        limits,
        max_name: (FILES_PREFIX.len() + limits.max_path_bytes).max(MANIFEST_ENTRY.len()),
    };
    let (manifest, manifest_bytes) = verifier.signed_manifest(publisher)?;
    if let Output::Article(_) = output {
        check_article_displayable(&manifest)?;
    }
    let directory_start = verifier.files(&manifest, output)?;
    verifier.central_directory(directory_start)?;
    Ok(VerifiedBundle {
        manifest,
        manifest_id: ContentId::of_bytes(&manifest_bytes),
        publisher: publisher.publisher().clone(),
    })
}

/// The state of one verification pass.
struct Verifier<'l, R> {
    src: Source<R>,
    /// The one reusable decompression buffer.
    buffer: Vec<u8>,
    /// Every local header read so far, for matching against the central directory.
    headers: Vec<LocalHeader>,
    limits: &'l BundleLimits,
    /// Longest acceptable zip entry name.
    max_name: usize,
}

impl<R: Read> Verifier<'_, R> {
    /// Reads `manifest.json` and `manifest.sig`, checks the signature with `publisher`, and only
    /// then parses the manifest. Returns it with its exact bytes.
    fn signed_manifest(
        &mut self,
        publisher: &(impl Trusted + ?Sized),
    ) -> Result<(Manifest, Vec<u8>), BundleError> {
        let header = read::first_entry(&mut self.src, self.max_name)?;
        if header.name != MANIFEST_ENTRY {
            return Err(BundleError::MissingManifest {
                found: header.display(),
            });
        }
        require_stored(&header)?;
        if header.size > self.limits.max_manifest_bytes {
            return Err(BundleError::Manifest(ManifestError::TooLarge {
                size: header.size,
                limit: self.limits.max_manifest_bytes,
            }));
        }
        let manifest_bytes = self.read_small(header)?;

        let header = match read::next_entry(&mut self.src, self.max_name)? {
            Next::Entry(header) if header.name == SIGNATURE_ENTRY => header,
            Next::Entry(header) => {
                return Err(BundleError::MissingSignature {
                    found: header.display(),
                })
            }
            Next::CentralDirectory => {
                return Err(BundleError::MissingSignature {
                    found: "the central directory".to_owned(),
                })
            }
        };
        require_stored(&header)?;
        if header.size != SIGNATURE_LEN {
            return Err(BundleError::SignatureLength(header.size));
        }
        let signature: [u8; 64] = self
            .read_small(header)?
            .try_into()
            .map_err(|bytes: Vec<u8>| BundleError::SignatureLength(bytes.len() as u64))?;
        // The manifest names the key that signed it: one the publisher delegates for bundles
        // (for a one-key publisher, the publisher's own key).
        let signer = publisher
            .verify_as(
                Role::Bundle,
                Domain::BundleManifest,
                &manifest_bytes,
                &signature,
            )
            .map_err(|_| BundleError::BadSignature(publisher.publisher().id()))?;
        let manifest = Manifest::parse_from(&manifest_bytes, signer, self.limits)
            .map_err(BundleError::Manifest)?;
        Ok((manifest, manifest_bytes))
    }

    /// Reads a metadata entry whose size the caller already bounded.
    fn read_small(&mut self, header: LocalHeader) -> Result<Vec<u8>, BundleError> {
        let mut bytes = Vec::with_capacity(header.size as usize);
        read::stream_entry(&mut self.src, &header, &mut self.buffer, |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        self.headers.push(header);
        Ok(bytes)
    }

    /// Checks every `files/...` entry against the next manifest file while streaming it to
    /// `output`. Returns the offset where the central directory starts.
    fn files(&mut self, manifest: &Manifest, output: &mut Output<'_>) -> Result<u64, BundleError> {
        let files = manifest.files();
        // Files checked so far: all local headers except the two metadata entries.
        let done = |headers: &Vec<LocalHeader>| headers.len() - 2;
        loop {
            let offset = self.src.offset();
            let header = match read::next_entry(&mut self.src, self.max_name)? {
                Next::Entry(header) => header,
                Next::CentralDirectory => {
                    if let Some(missing) = files.get(done(&self.headers)) {
                        return Err(BundleError::MissingFromBundle(missing.path().clone()));
                    }
                    return Ok(offset);
                }
            };
            let file = expected_file(&header, files, done(&self.headers), self.limits)?;
            check_declared_sizes(&header, file, self.limits)?;
            let mut target = Target::open(output, file)?;
            let mut hasher = Sha256::new();
            read::stream_entry(&mut self.src, &header, &mut self.buffer, |chunk| {
                hasher.update(chunk);
                target.write(chunk)
            })?;
            let actual = ContentId::from_digest(hasher);
            if actual != file.sha256() {
                return Err(BundleError::HashMismatch {
                    path: file.path().clone(),
                    expected: file.sha256(),
                    actual,
                });
            }
            target.finish()?;
            self.headers.push(header);
        }
    }

    /// Checks that the central directory (whose first signature was already read) lists exactly
    /// the entries read, then the end record, then the end of the stream.
    fn central_directory(&mut self, directory_start: u64) -> Result<(), BundleError> {
        let local_count = self.headers.len() as u64;
        for (i, header) in self.headers.iter().enumerate() {
            if i > 0 {
                if let NextCentral::End = read::next_central(&mut self.src)? {
                    return Err(BundleError::CentralCount(local_count));
                }
            }
            read::read_central_record(&mut self.src, header)?;
        }
        let directory_end = self.src.offset();
        if let NextCentral::Record = read::next_central(&mut self.src)? {
            return Err(BundleError::CentralCount(local_count));
        }
        read::read_end_record(&mut self.src, local_count, directory_start, directory_end)?;
        match self.src.count_rest()? {
            0 => Ok(()),
            trailing => Err(BundleError::TrailingData(trailing)),
        }
    }
}

/// `read_article` refuses an article too large to display before reading any file.
fn check_article_displayable(manifest: &Manifest) -> Result<(), BundleError> {
    let article = manifest
        .files()
        .iter()
        .find(|f| f.path().as_str() == ARTICLE_PATH);
    match article {
        Some(article) if article.size() > MAX_RENDERED_ARTICLE_BYTES => {
            Err(BundleError::ArticleTooLarge {
                size: article.size(),
                limit: MAX_RENDERED_ARTICLE_BYTES,
            })
        }
        _ => Ok(()),
    }
}

fn require_stored(header: &LocalHeader) -> Result<(), BundleError> {
    if header.method != METHOD_STORED {
        return Err(BundleError::MetadataCompressed {
            entry: header.display(),
        });
    }
    Ok(())
}

/// The manifest file `header` must be: the next one in manifest order (`next`).
fn expected_file<'m>(
    header: &LocalHeader,
    files: &'m [FileEntry],
    next: usize,
    limits: &BundleLimits,
) -> Result<&'m FileEntry, BundleError> {
    let entry = header.display();
    let Some(path) = header.name.strip_prefix(FILES_PREFIX) else {
        if header.name == MANIFEST_ENTRY || header.name == SIGNATURE_ENTRY {
            return Err(BundleError::DuplicateEntry { entry });
        }
        return Err(match EntryName::new(&header.name, limits) {
            Err(reason) => BundleError::UnsafeEntryName { entry, reason },
            Ok(_) => BundleError::UnexpectedEntry { entry },
        });
    };
    let name = EntryName::new(path, limits).map_err(|reason| BundleError::UnsafeEntryName {
        entry: entry.clone(),
        reason,
    })?;
    match files.get(next) {
        Some(file) if file.path() == &name => Ok(file),
        _ => Err(match files.binary_search_by(|f| f.path().cmp(&name)) {
            Ok(i) if i < next => BundleError::DuplicateEntry { entry },
            // `name` is listed later: the file expected here is missing.
            Ok(_) => BundleError::MissingFromBundle(files[next].path().clone()),
            Err(_) => BundleError::NotInManifest { entry },
        }),
    }
}

/// Refuses an entry whose header disagrees with the manifest or would expand past the ratio
/// limit, before reading any of its data (so a zip bomb stops at its header).
fn check_declared_sizes(
    header: &LocalHeader,
    file: &FileEntry,
    limits: &BundleLimits,
) -> Result<(), BundleError> {
    if header.size != file.size() {
        return Err(BundleError::SizeMismatch {
            path: file.path().clone(),
            manifest: file.size(),
            entry: header.size,
        });
    }
    let compressed = header.compressed_size.max(1);
    if header.method == METHOD_DEFLATE
        && header.size > limits.max_compression_ratio.saturating_mul(compressed)
    {
        return Err(BundleError::CompressionRatio {
            entry: header.display(),
            ratio: header.size / compressed,
            limit: limits.max_compression_ratio,
        });
    }
    Ok(())
}

/// Where one file's bytes go.
enum Target<'a> {
    Skip,
    Memory(&'a mut Vec<u8>),
    File { file: File, path: PathBuf },
}

impl<'a> Target<'a> {
    fn open(output: &'a mut Output<'_>, file: &FileEntry) -> Result<Self, BundleError> {
        match output {
            Output::Discard => Ok(Target::Skip),
            Output::Article(buffer) if file.path().as_str() == ARTICLE_PATH => {
                Ok(Target::Memory(buffer))
            }
            Output::Article(_) => Ok(Target::Skip),
            Output::Folder(root) => {
                // EntryName has no empty, `.` or `..` components and is not absolute, and the
                // folder is fresh, so this path stays inside it.
                let path: PathBuf = file
                    .path()
                    .components()
                    .fold(root.to_path_buf(), |p, c| p.join(c));
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_at(parent))?;
                }
                let handle = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_at(&path))?;
                Ok(Target::File { file: handle, path })
            }
        }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), BundleError> {
        match self {
            Target::Skip => Ok(()),
            Target::Memory(buffer) => {
                buffer.extend_from_slice(chunk);
                Ok(())
            }
            Target::File { file, path } => file.write_all(chunk).map_err(io_at(path)),
        }
    }

    fn finish(self) -> Result<(), BundleError> {
        match self {
            Target::File { file, path } => file.sync_all().map_err(io_at(&path)),
            Target::Skip | Target::Memory(_) => Ok(()),
        }
    }
}
