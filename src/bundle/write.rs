//! Bundle creation: source folder to signed, deterministic zip plus a minisign signature.
//!
//! Owns the publisher-side rules: which files of a folder go into a bundle (every regular file,
//! dotfiles included, nothing skipped silently), how they are named, and how the zip is written
//! so the same folder and key always give the same bytes. Streams every file twice (hash pass,
//! then compress pass, which re-checks the hash), so memory stays flat for big files. Writes only
//! temporary files beside the output and renames them into place; never modifies the source
//! folder, and never publishes a bundle that does not pass its own verifier.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::layout::*;
use super::verify::{self, Output};
use super::{io_at, BundleError, CreateOptions, CreatedBundle};
use crate::article::{self, FrontMatter};
use crate::content_id::{ContentId, HashingReader};
use crate::keys::{minisig, Domain, SecretKey};
use crate::limits::{BundleLimits, MAX_RENDERED_ARTICLE_BYTES};
use crate::manifest::{
    is_valid_bundle_name, EntryName, FileEntry, Manifest, ManifestFields, ARTICLE_PATH,
};

/// A regular file found in the source folder and hashed.
struct SourceFile {
    name: EntryName,
    path: PathBuf,
    size: u64,
    sha256: ContentId,
}

pub(super) fn create(
    src_dir: &Path,
    key: &SecretKey,
    out: &Path,
    opts: &CreateOptions,
) -> Result<CreatedBundle, BundleError> {
    let limits = zip32_limits(&opts.limits);
    if !fs::metadata(src_dir).map_err(io_at(src_dir))?.is_dir() {
        return Err(BundleError::SourceNotFolder(src_dir.to_owned()));
    }
    let src_canonical = fs::canonicalize(src_dir).map_err(io_at(src_dir))?;
    let name = bundle_name(&src_canonical, opts.name.as_deref())?;
    let version = opts.version.unwrap_or(1);
    if version == 0 {
        return Err(BundleError::BadVersion);
    }
    let out_dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if fs::canonicalize(out_dir)
        .map_err(io_at(out_dir))?
        .starts_with(&src_canonical)
    {
        return Err(BundleError::OutputInsideSource(out.to_owned()));
    }

    let mut buffer = vec![0u8; BUFFER_SIZE];
    let files = hash_sources(src_dir, &limits, &mut buffer)?;
    let front = front_matter(src_dir, &files)?;
    let manifest = Manifest::new(
        ManifestFields {
            publisher: key.public().clone(),
            name: name.clone(),
            version,
            created: front.date().to_owned(),
            title: front.title().to_owned(),
            author: front.author().to_owned(),
            language: front.language().to_owned(),
            files: files
                .iter()
                .map(|f| FileEntry::new(f.name.clone(), f.size, f.sha256))
                .collect(),
        },
        &limits,
    )
    .map_err(BundleError::SourceManifest)?;
    let manifest_bytes = manifest.to_bytes();
    let signature = key.sign(Domain::BundleManifest, &manifest_bytes);

    let zip_temp = published_temp_file(out_dir)?;
    let temp_path = zip_temp.path().to_owned();
    write_zip(
        zip_temp.as_file(),
        &manifest_bytes,
        &signature,
        &files,
        &mut buffer,
    )?;
    let size = zip_temp
        .as_file()
        .metadata()
        .map_err(io_at(&temp_path))?
        .len();
    if size > limits.max_bundle_bytes {
        return Err(BundleError::BundleTooLarge {
            size,
            limit: limits.max_bundle_bytes,
        });
    }

    // Read the result back through the verifier: it proves the bytes have exactly the layout
    // readers accept, and yields the zip's sha256 in the same pass.
    let mut reader = HashingReader::new(zip_temp.reopen().map_err(io_at(&temp_path))?);
    verify::verify(&mut reader, key.public(), &limits, &mut Output::Discard)
        .map_err(|e| BundleError::SelfCheck(Box::new(e)))?;
    let (sha256, _) = reader.finish();

    let trusted = format!("qasid bundle name={name} version={version} sha256={sha256}");
    let untrusted = format!("signature from qasid publisher {}", key.public().id());
    let zip_again = zip_temp.reopen().map_err(io_at(&temp_path))?;
    let minisig_text =
        minisig::sign_file(key, zip_again, &trusted, &untrusted).map_err(BundleError::Minisign)?;
    let mut sig_temp = published_temp_file(out_dir)?;
    let sig_temp_path = sig_temp.path().to_owned();
    sig_temp
        .write_all(minisig_text.as_bytes())
        .and_then(|()| sig_temp.as_file().sync_all())
        .map_err(io_at(&sig_temp_path))?;

    let minisig_path = {
        let mut path = out.as_os_str().to_owned();
        path.push(".minisig");
        PathBuf::from(path)
    };
    zip_temp.persist(out).map_err(|e| io_at(out)(e.error))?;
    sig_temp
        .persist(&minisig_path)
        .map_err(|e| io_at(&minisig_path)(e.error))?;
    // Best effort: persists the renames where directories can be synced (not on Windows).
    if let Ok(dir) = File::open(out_dir) {
        let _ = dir.sync_all();
    }
    Ok(CreatedBundle {
        path: out.to_owned(),
        minisig_path,
        manifest,
        sha256,
        size,
    })
}

/// Caps that keep every size, offset and count inside classic zip fields, so the zip crate
/// never falls back to zip64 (which the verifier refuses).
fn zip32_limits(limits: &BundleLimits) -> BundleLimits {
    let max_u32 = u64::from(u32::MAX) - 1;
    BundleLimits {
        max_bundle_bytes: limits.max_bundle_bytes.min(max_u32),
        max_file_bytes: limits.max_file_bytes.min(max_u32),
        max_total_bytes: limits.max_total_bytes.min(max_u32),
        // Two metadata entries besides the files; 0xFFFF entries would need zip64.
        max_entries: limits.max_entries.min(usize::from(u16::MAX) - 3),
        ..limits.clone()
    }
}

fn bundle_name(src_canonical: &Path, explicit: Option<&str>) -> Result<String, BundleError> {
    match explicit {
        Some(name) if is_valid_bundle_name(name) => Ok(name.to_owned()),
        Some(name) => Err(BundleError::BadName(name.to_owned())),
        None => {
            let folder = src_canonical
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if is_valid_bundle_name(&folder) {
                Ok(folder)
            } else {
                Err(BundleError::NameNeeded(folder))
            }
        }
    }
}

/// Every regular file under `root`, sorted by entry name. Refuses what a bundle cannot hold
/// faithfully, naming the offending path.
fn walk(root: &Path, limits: &BundleLimits) -> Result<Vec<(EntryName, PathBuf)>, BundleError> {
    let mut found = Vec::new();
    let mut folders = vec![(root.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = folders.pop() {
        let mut entries = fs::read_dir(&folder)
            .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
            .map_err(io_at(&folder))?;
        // Sorted so that, of several problems, the same one is always reported first.
        entries.sort_by_key(|entry| entry.file_name());
        if entries.is_empty() && !prefix.is_empty() {
            return Err(BundleError::SourceEmptyFolder(folder));
        }
        for entry in entries {
            let path = entry.path();
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(BundleError::SourceNameNotUtf8(path));
            };
            let relative = format!("{prefix}{file_name}");
            let kind = entry.file_type().map_err(io_at(&path))?;
            if kind.is_symlink() {
                return Err(BundleError::SourceSymlink(path));
            } else if kind.is_dir() {
                folders.push((path, relative + "/"));
            } else if kind.is_file() {
                let name = EntryName::new(&relative, limits).map_err(|reason| {
                    BundleError::SourceUnsafeName {
                        path: path.clone(),
                        reason,
                    }
                })?;
                found.push((name, path));
                if found.len() > limits.max_entries {
                    return Err(BundleError::SourceTooManyFiles {
                        path: root.to_owned(),
                        limit: limits.max_entries,
                    });
                }
            } else {
                return Err(BundleError::SourceNotRegular(path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The hash pass over every file of the folder, in entry name order.
fn hash_sources(
    src_dir: &Path,
    limits: &BundleLimits,
    buffer: &mut [u8],
) -> Result<Vec<SourceFile>, BundleError> {
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for (name, path) in walk(src_dir, limits)? {
        let file = hash_file(name, path, limits, buffer)?;
        total += file.size;
        if total > limits.max_total_bytes {
            return Err(BundleError::SourceTotalTooLarge {
                path: src_dir.to_owned(),
                limit: limits.max_total_bytes,
            });
        }
        files.push(file);
    }
    Ok(files)
}

/// Opens `path`, which must (still) be a regular file, and returns it with its length.
fn open_regular(path: &Path) -> Result<(File, u64), BundleError> {
    let file = File::open(path).map_err(io_at(path))?;
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(BundleError::SourceNotRegular(path.to_owned()));
    }
    Ok((file, meta.len()))
}

/// The hash pass: size and sha256 of one file, and for files that will be deflated, a check
/// that verifiers will accept their compression ratio.
fn hash_file(
    name: EntryName,
    path: PathBuf,
    limits: &BundleLimits,
    buffer: &mut [u8],
) -> Result<SourceFile, BundleError> {
    let (file, len) = open_regular(&path)?;
    if len > limits.max_file_bytes {
        return Err(BundleError::SourceFileTooLarge {
            path,
            size: len,
            limit: limits.max_file_bytes,
        });
    }
    let mut reader = HashingReader::new(file.take(limits.max_file_bytes + 1));
    let mut deflate = is_text_like(&name)
        .then(|| DeflateEncoder::new(io::sink(), Compression::new(DEFLATE_LEVEL)));
    loop {
        let n = reader.read(buffer).map_err(io_at(&path))?;
        if n == 0 {
            break;
        }
        if let Some(encoder) = &mut deflate {
            encoder.write_all(&buffer[..n]).map_err(io_at(&path))?;
        }
    }
    let (sha256, size) = reader.finish();
    if size > limits.max_file_bytes {
        return Err(BundleError::SourceFileTooLarge {
            path,
            size,
            limit: limits.max_file_bytes,
        });
    }
    if let Some(mut encoder) = deflate {
        encoder.try_finish().map_err(io_at(&path))?;
        let compressed = encoder.total_out().max(1);
        if size > limits.max_compression_ratio.saturating_mul(compressed) {
            return Err(BundleError::SourceCompressionRatio {
                path,
                ratio: size / compressed,
                limit: limits.max_compression_ratio,
            });
        }
    }
    Ok(SourceFile {
        name,
        path,
        size,
        sha256,
    })
}

/// The front matter of the folder's top-level `article.md`, which must be the bytes hashed.
fn front_matter(src_dir: &Path, files: &[SourceFile]) -> Result<FrontMatter, BundleError> {
    let article = files
        .iter()
        .find(|f| f.name.as_str() == ARTICLE_PATH)
        .ok_or_else(|| BundleError::SourceMissingArticle(src_dir.to_owned()))?;
    let path = &article.path;
    if article.size > MAX_RENDERED_ARTICLE_BYTES {
        return Err(BundleError::SourceArticleTooLarge {
            path: path.clone(),
            size: article.size,
            limit: MAX_RENDERED_ARTICLE_BYTES,
        });
    }
    let bytes = fs::read(path).map_err(io_at(path))?;
    if ContentId::of_bytes(&bytes) != article.sha256 {
        return Err(BundleError::SourceChanged(path.clone()));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| BundleError::SourceArticleNotUtf8(path.clone()))?;
    article::parse(&text)
        .map(|article| article.front_matter)
        .map_err(|source| BundleError::SourceArticle {
            path: path.clone(),
            source,
        })
}

/// A temporary file in `dir` for an artifact that will be published (so world-readable, unlike
/// tempfile's private default).
fn published_temp_file(dir: &Path) -> Result<tempfile::NamedTempFile, BundleError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".qasid-bundle-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir).map_err(io_at(dir))
}

/// Zip options for one entry: fixed timestamp and permissions, no extra fields, the given
/// method (deflate at the fixed level).
fn entry_options(deflate: bool) -> SimpleFileOptions {
    let options = SimpleFileOptions::default()
        .last_modified_time(DateTime::default())
        .unix_permissions(FILE_PERMISSIONS)
        .large_file(false);
    if deflate {
        options
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(DEFLATE_LEVEL.into()))
    } else {
        options.compression_method(CompressionMethod::Stored)
    }
}

/// The compress pass: writes the whole zip to `file` (seekable, so the zip crate back-patches
/// sizes into the local headers instead of using data descriptors) and syncs it.
fn write_zip(
    file: &File,
    manifest_bytes: &[u8],
    signature: &[u8; 64],
    files: &[SourceFile],
    buffer: &mut [u8],
) -> Result<(), BundleError> {
    let mut zip = ZipWriter::new(BufWriter::with_capacity(BUFFER_SIZE, file));
    zip.start_file(MANIFEST_ENTRY, entry_options(false))
        .map_err(BundleError::Zip)?;
    zip.write_all(manifest_bytes)
        .map_err(|e| BundleError::Zip(e.into()))?;
    zip.start_file(SIGNATURE_ENTRY, entry_options(false))
        .map_err(BundleError::Zip)?;
    zip.write_all(signature)
        .map_err(|e| BundleError::Zip(e.into()))?;
    for source in files {
        zip.start_file(
            file_entry_name(&source.name),
            entry_options(is_text_like(&source.name)),
        )
        .map_err(BundleError::Zip)?;
        // Re-hash while copying: what is written must be what the manifest says.
        let (file, len) = open_regular(&source.path)?;
        if len != source.size {
            return Err(BundleError::SourceChanged(source.path.clone()));
        }
        let mut reader = HashingReader::new(file.take(source.size + 1));
        loop {
            let n = reader.read(buffer).map_err(io_at(&source.path))?;
            if n == 0 {
                break;
            }
            zip.write_all(&buffer[..n])
                .map_err(|e| BundleError::Zip(e.into()))?;
        }
        if reader.finish() != (source.sha256, source.size) {
            return Err(BundleError::SourceChanged(source.path.clone()));
        }
    }
    let mut writer = zip.finish().map_err(BundleError::Zip)?;
    writer.flush().map_err(|e| BundleError::Zip(e.into()))?;
    file.sync_all().map_err(|e| BundleError::Zip(e.into()))
}
