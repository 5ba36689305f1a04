//! Bundles: writing deterministic, signed zip files and verifying them with a strict reader.
//!
//! Owns the bundle's zip layout (`bundle/layout.rs`), the only constructor of [`VerifiedBundle`],
//! and the only code that turns untrusted bundle bytes into files on disk. Verification reads
//! the bundle once, front to back, without seeking: every entry is checked against the exact
//! layout qasid writes, the manifest signature is checked with the caller's key before the
//! manifest JSON is parsed, and every file is size-, crc- and sha256-checked while it streams.
//! This module never trusts a zip's central directory to find data, never writes outside the
//! extraction folder, and never leaves a partly verified extraction behind.
//!
//! Bundle layout, in order: `manifest.json` (stored), `manifest.sig` (stored, 64 raw bytes:
//! ed25519 over `"qasid-bundle-manifest-v1\n" ‖ manifest.json`), then `files/<path>` for each
//! manifest file in manifest order (deflate level 6 for text-like extensions, stored otherwise).
//! Every entry: DOS time 1980-01-01 00:00:00, unix mode 0o100644, no extra fields, comments,
//! data descriptors or zip64. A detached `FILE.zip.minisig` signs the whole zip for minisign.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::article::ArticleError;
use crate::content_id::ContentId;
use crate::keys::{KeyId, PublicKey, SecretKey, Trusted};
use crate::limits::BundleLimits;
use crate::manifest::{EntryName, EntryNameError, Manifest, ManifestError};
use crate::ErrorClass;

mod extract;
mod layout;
mod read;
mod verify;
mod write;

/// Options for [`create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The bundle name; defaults to the source folder's name, which must then be a valid name.
    pub name: Option<String>,
    /// The bundle version; defaults to 1.
    pub version: Option<u64>,
    pub limits: BundleLimits,
}

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct CreatedBundle {
    path: PathBuf,
    minisig_path: PathBuf,
    manifest: Manifest,
    sha256: ContentId,
    size: u64,
}

impl CreatedBundle {
    /// The zip file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The detached minisign signature of the zip: the zip's path with `.minisig` appended.
    pub fn minisig_path(&self) -> &Path {
        &self.minisig_path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// sha256 of the whole zip file.
    pub fn sha256(&self) -> ContentId {
        self.sha256
    }

    /// Size of the zip file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A bundle whose signature, structure and every file were checked. Only the verifier in this
/// module constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    manifest: Manifest,
    manifest_id: ContentId,
    publisher: PublicKey,
}

impl VerifiedBundle {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// sha256 of the exact `manifest.json` bytes that were signed.
    pub fn manifest_id(&self) -> ContentId {
        self.manifest_id
    }

    /// The publisher id the bundle was verified for. The manifest names the signing key, which
    /// is this key for a one-key publisher and a key its root delegates otherwise.
    pub fn publisher(&self) -> &PublicKey {
        &self.publisher
    }
}

/// Writes a bundle of `src_dir` signed with `key` to `out` (atomically: temp file, fsync,
/// rename), and `out` + `.minisig` beside it. Every regular file under `src_dir` is included,
/// dotfiles too; symlinks, other file types, empty folders, non-UTF-8 or unsafe names and files
/// past `opts.limits` are refused with an error naming the file. The same folder contents and
/// key always give a byte-identical zip.
pub fn create(
    src_dir: &Path,
    key: &SecretKey,
    out: &Path,
    opts: &CreateOptions,
) -> Result<CreatedBundle, BundleError> {
    write::create(src_dir, key, out, opts)
}

/// Verifies the bundle at `path` against `publisher`. See [`verify_reader`].
pub fn verify_file(
    path: &Path,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<VerifiedBundle, BundleError> {
    let file = std::fs::File::open(path).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        source,
    })?;
    verify_reader(file, publisher, limits)
}

/// Verifies a bundle read sequentially from `r` (no seeking, so it also works on a download as
/// it arrives). Reads to the end of the stream: trailing bytes are an error.
pub fn verify_reader(
    r: impl Read,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<VerifiedBundle, BundleError> {
    verify::verify(r, publisher, limits, &mut verify::Output::Discard)
}

/// Verifies the bundle at `path` and extracts its files into `out_dir`, which must not exist or
/// be an empty folder. Files are written into a fresh temporary folder beside `out_dir` and the
/// folder is renamed to `out_dir` only once everything verified, so a failed verification
/// leaves nothing behind. The extracted folder is readable by its owner only (mode 0700).
pub fn extract_verified(
    path: &Path,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
    out_dir: &Path,
) -> Result<VerifiedBundle, BundleError> {
    let bundle = std::fs::File::open(path).map_err(io_at(path))?;
    extract::extract_verified(bundle, publisher, limits, out_dir)
}

/// [`extract_verified`] of a bundle read sequentially from `r` (a verified download held in
/// memory or in a temp file), with the same all-or-nothing rule.
pub fn extract_verified_reader(
    r: impl Read,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
    out_dir: &Path,
) -> Result<VerifiedBundle, BundleError> {
    extract::extract_verified(r, publisher, limits, out_dir)
}

/// Fully verifies the bundle at `path` and returns its `article.md` as text. The article must be
/// UTF-8 and at most [`crate::limits::MAX_RENDERED_ARTICLE_BYTES`].
pub fn read_article(
    path: &Path,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
) -> Result<(VerifiedBundle, String), BundleError> {
    let file = std::fs::File::open(path).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut article = Vec::new();
    let verified = verify::verify(
        file,
        publisher,
        limits,
        &mut verify::Output::Article(&mut article),
    )?;
    let text = String::from_utf8(article).map_err(|_| BundleError::ArticleNotUtf8)?;
    Ok((verified, text))
}

/// Everything that can go wrong creating, verifying or extracting a bundle. `entry` fields are
/// zip entry names from the bundle, already escaped for display.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    // ---- Verification: the zip container ----
    #[error("bundle: empty file")]
    Empty,
    #[error("bundle: not a zip file")]
    NotAZip,
    #[error("bundle: data hidden before the first entry ({0} bytes)")]
    DataBeforeFirstEntry(u64),
    #[error("bundle: truncated at byte {offset} (inside {context})")]
    Truncated { offset: u64, context: &'static str },
    #[error("bundle: unexpected data at byte {0}, between entries")]
    DataBetweenEntries(u64),
    #[error("bundle: {0} bytes of trailing data after the end of the zip")]
    TrailingData(u64),
    #[error("bundle: zip comments are not allowed")]
    Comment,
    #[error("bundle: larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("bundle: zip64 structures are not allowed")]
    Zip64Directory,
    #[error("bundle: central directory does not list exactly the bundle's {0} entries")]
    CentralCount(u64),
    #[error("bundle: end of central directory {0} is wrong")]
    EndRecord(&'static str),
    #[error("bundle: an entry name of {0} bytes is longer than any allowed name")]
    NameTooLong(usize),
    #[error("entry {entry}: zip64 size markers are not allowed")]
    Zip64Entry { entry: String },
    #[error("entry {entry}: encrypted entries are not allowed")]
    Encrypted { entry: String },
    #[error("entry {entry}: data descriptors are not allowed")]
    DataDescriptor { entry: String },
    #[error("entry {entry}: general purpose flags {flags:#06x} are not allowed (only bit 11, UTF-8 names)")]
    Flags { entry: String, flags: u16 },
    #[error("entry {entry}: non-ASCII name without the UTF-8 flag (bit 11)")]
    NameNotMarkedUtf8 { entry: String },
    #[error("entry {entry}: name is not UTF-8")]
    NameNotUtf8 { entry: String },
    #[error("entry {entry}: needs zip version {version}, at most 20 is allowed")]
    Version { entry: String, version: u16 },
    #[error("entry {entry}: compression method {method} is not allowed (only 0, stored, and 8, deflate)")]
    Method { entry: String, method: u16 },
    #[error("entry {entry}: must be stored, not compressed")]
    MetadataCompressed { entry: String },
    #[error("entry {entry}: extra fields are not allowed")]
    ExtraField { entry: String },
    #[error("entry {entry}: file comments are not allowed")]
    EntryComment { entry: String },
    #[error("entry {entry}: timestamp must be 1980-01-01 00:00:00")]
    Timestamp { entry: String },
    #[error("entry {entry}: {reason}")]
    UnsafeEntryName {
        entry: String,
        reason: EntryNameError,
    },
    #[error("entry {entry}: symlink entries are not allowed")]
    Symlink { entry: String },
    #[error("entry {entry}: directory entries are not allowed")]
    Directory { entry: String },
    #[error("entry {entry}: device, pipe and socket entries are not allowed")]
    SpecialFile { entry: String },
    #[error("entry {entry}: external attributes {attributes:#010x} are not allowed (only a plain rw-r--r-- file)")]
    Attributes { entry: String, attributes: u32 },
    #[error("entry {entry}: central directory {field} does not match the local header")]
    CentralMismatch { entry: String, field: &'static str },
    #[error("entry {entry}: central directory {field} {value:#x} is not allowed")]
    CentralField {
        entry: String,
        field: &'static str,
        value: u32,
    },
    #[error("entry {entry}: stored entry has compressed size {compressed} but size {size}")]
    StoredSizeMismatch {
        entry: String,
        compressed: u64,
        size: u64,
    },

    // ---- Verification: the bundle inside the zip ----
    #[error("bundle: first entry must be manifest.json, found {found}")]
    MissingManifest { found: String },
    #[error("bundle: manifest.sig must follow manifest.json, found {found}")]
    MissingSignature { found: String },
    #[error("manifest.sig: must be exactly 64 bytes, found {0}")]
    SignatureLength(u64),
    #[error("signature does not match publisher {0}")]
    BadSignature(KeyId),
    #[error("manifest.json: {0}")]
    Manifest(#[source] ManifestError),
    #[error(
        "entry {entry}: not allowed in a bundle (only manifest.json, manifest.sig and files/...)"
    )]
    UnexpectedEntry { entry: String },
    #[error("entry {entry}: not in manifest")]
    NotInManifest { entry: String },
    #[error("entry {entry}: duplicate entry")]
    DuplicateEntry { entry: String },
    #[error("{0}: missing from bundle")]
    MissingFromBundle(EntryName),
    #[error("{path}: size mismatch (manifest says {manifest}, zip entry says {entry})")]
    SizeMismatch {
        path: EntryName,
        manifest: u64,
        entry: u64,
    },
    #[error("entry {entry}: data does not match its declared size of {declared} bytes")]
    SizeLie { entry: String, declared: u64 },
    #[error("entry {entry}: corrupt deflate data ({detail})")]
    CorruptDeflate { entry: String, detail: &'static str },
    #[error("entry {entry}: compression ratio {ratio} exceeds limit {limit}")]
    CompressionRatio {
        entry: String,
        ratio: u64,
        limit: u64,
    },
    #[error("entry {entry}: crc32 mismatch (header says {expected:08x}, data has {actual:08x})")]
    CrcMismatch {
        entry: String,
        expected: u32,
        actual: u32,
    },
    #[error("{path}: sha256 mismatch (manifest says {expected}, bundle has {actual})")]
    HashMismatch {
        path: EntryName,
        expected: ContentId,
        actual: ContentId,
    },
    #[error("article.md: {size} bytes, more than the {limit} bytes qasid will display")]
    ArticleTooLarge { size: u64, limit: u64 },
    #[error("article.md: not valid UTF-8")]
    ArticleNotUtf8,

    // ---- Runtime: I/O on our side ----
    #[error("{}: {source}", shown(path))]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bundle: read error: {0}")]
    Read(#[source] io::Error),
    #[error("{}: changed while the bundle was being written", shown(.0))]
    SourceChanged(PathBuf),
    #[error("writing the zip: {0}")]
    Zip(#[source] zip::result::ZipError),
    #[error("writing the minisign signature: {0}")]
    Minisign(#[source] io::Error),
    #[error("the bundle just written does not verify: {0}")]
    SelfCheck(Box<BundleError>),

    // ---- Usage: refusals ----
    #[error("{}: already exists and is not an empty folder", shown(.0))]
    OutputNotEmpty(PathBuf),
    #[error("{}: is inside the source folder", shown(.0))]
    OutputInsideSource(PathBuf),
    #[error("{}: not a folder", shown(.0))]
    SourceNotFolder(PathBuf),
    #[error("{}: symlinks are not allowed in a bundle", shown(.0))]
    SourceSymlink(PathBuf),
    #[error("{}: not a regular file (devices, pipes and sockets cannot be bundled)", shown(.0))]
    SourceNotRegular(PathBuf),
    #[error("{}: file name is not UTF-8", shown(.0))]
    SourceNameNotUtf8(PathBuf),
    #[error("{}: {reason}", shown(path))]
    SourceUnsafeName {
        path: PathBuf,
        reason: EntryNameError,
    },
    #[error("{}: empty folders cannot be represented in a bundle", shown(.0))]
    SourceEmptyFolder(PathBuf),
    #[error("{}: {size} bytes, limit is {limit}", shown(path))]
    SourceFileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}: more than {limit} files", shown(path))]
    SourceTooManyFiles { path: PathBuf, limit: usize },
    #[error("{}: files add up to more than {limit} bytes", shown(path))]
    SourceTotalTooLarge { path: PathBuf, limit: u64 },
    #[error(
        "{}: compresses {ratio} times, more than the limit of {limit} verifiers accept",
        shown(path)
    )]
    SourceCompressionRatio {
        path: PathBuf,
        ratio: u64,
        limit: u64,
    },
    #[error("{}: every bundle needs an article.md", shown(.0))]
    SourceMissingArticle(PathBuf),
    #[error(
        "{}: {size} bytes, more than the {limit} bytes readers will display",
        shown(path)
    )]
    SourceArticleTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}: not valid UTF-8", shown(.0))]
    SourceArticleNotUtf8(PathBuf),
    #[error("{}: {source}", shown(path))]
    SourceArticle {
        path: PathBuf,
        #[source]
        source: ArticleError,
    },
    #[error("{0}")]
    SourceManifest(#[source] ManifestError),
    #[error("folder name {0:?} is not a valid bundle name (a-z, 0-9 and -): pass --name")]
    NameNeeded(String),
    #[error("--name {0:?} is not a valid bundle name (a-z, 0-9 and -, starting with a letter or digit, at most 64)")]
    BadName(String),
    #[error("--version must be at least 1")]
    BadVersion,
    #[error("the bundle would be {size} bytes, limit is {limit}")]
    BundleTooLarge { size: u64, limit: u64 },
}

impl BundleError {
    pub fn class(&self) -> ErrorClass {
        use BundleError as E;
        match self {
            E::Io { .. }
            | E::Read(_)
            | E::SourceChanged(_)
            | E::Zip(_)
            | E::Minisign(_)
            | E::SelfCheck(_) => ErrorClass::Runtime,
            E::OutputNotEmpty(_)
            | E::OutputInsideSource(_)
            | E::SourceNotFolder(_)
            | E::SourceSymlink(_)
            | E::SourceNotRegular(_)
            | E::SourceNameNotUtf8(_)
            | E::SourceUnsafeName { .. }
            | E::SourceEmptyFolder(_)
            | E::SourceFileTooLarge { .. }
            | E::SourceTooManyFiles { .. }
            | E::SourceTotalTooLarge { .. }
            | E::SourceCompressionRatio { .. }
            | E::SourceMissingArticle(_)
            | E::SourceArticleTooLarge { .. }
            | E::SourceArticleNotUtf8(_)
            | E::SourceArticle { .. }
            | E::SourceManifest(_)
            | E::NameNeeded(_)
            | E::BadName(_)
            | E::BadVersion
            | E::BundleTooLarge { .. } => ErrorClass::Usage,
            _ => ErrorClass::Verification,
        }
    }
}

/// A local path for an error message, with control and bidirectional characters escaped (file
/// names in a source folder can be as hostile as names in a bundle).
fn shown(path: &Path) -> String {
    crate::manifest::printable(path.as_os_str().as_encoded_bytes())
}

/// Makes `io::Error` carry a path for [`BundleError::Io`].
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}
