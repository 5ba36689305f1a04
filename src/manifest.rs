//! The bundle manifest (`manifest.json`) and the validated names of the files it lists.
//!
//! Owns the manifest's JSON form and every rule a manifest must satisfy: a [`Manifest`] value
//! exists only if it passed validation, and an [`EntryName`] only if it is safe to join onto an
//! extraction folder on any common operating system. The JSON wire structs are private and
//! separate from the validated types. This module never checks signatures and never touches
//! files or zips: the bundle verifier checks the signature over the exact manifest bytes before
//! handing them to [`Manifest::parse`].

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

use crate::article;
use crate::content_id::ContentId;
use crate::keys::{KeyId, PublicKey};
use crate::limits::BundleLimits;

/// The value of the manifest's `format` field for this version of the bundle format.
pub const FORMAT: &str = "qasid-bundle/1";

/// The file every bundle must contain.
pub const ARTICLE_PATH: &str = "article.md";

/// Why a path was refused as an [`EntryName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryNameError {
    #[error("empty path")]
    Empty,
    #[error("absolute path")]
    Absolute,
    #[error("backslash in path")]
    Backslash,
    #[error("path escapes bundle")]
    Escapes,
    #[error("`.` path component")]
    DotComponent,
    #[error("empty path component")]
    EmptyComponent,
    #[error("control character in path")]
    ControlCharacter,
    #[error("`:` in path")]
    Colon,
    /// Right-to-left overrides and isolates can make `gnp.exe` look like `exe.png`.
    #[error("bidirectional control character in path (can disguise a file name)")]
    BidiControl,
    /// `<>"|?*` cannot be written on Windows, where many readers extract bundles.
    #[error("character {0:?} is not allowed in file names on Windows")]
    WindowsCharacter(char),
    /// `CON`, `NUL`, `COM1`… name devices on Windows, even with an extension.
    #[error("`{0}` is a reserved device name on Windows")]
    WindowsDeviceName(String),
    /// Windows silently strips a trailing dot or space, so `a.` and `a` would collide.
    #[error("path component ends with a dot or a space")]
    TrailingDotOrSpace,
    #[error("path is {len} bytes long, limit is {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("path is {depth} components deep, limit is {limit}")]
    TooDeep { depth: usize, limit: usize },
}

/// A relative, `/`-separated path inside a bundle that is safe to join onto an extraction folder:
/// not absolute, no empty, `.` or `..` components, no backslash, `:`, control or bidirectional
/// control characters, nothing Windows cannot create, within the path length and depth limits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryName(String);

impl EntryName {
    /// Validates `name` against the rules above and `limits`.
    pub fn new(name: &str, limits: &BundleLimits) -> Result<Self, EntryNameError> {
        if name.is_empty() {
            return Err(EntryNameError::Empty);
        }
        if name.starts_with('/') {
            return Err(EntryNameError::Absolute);
        }
        if name.contains('\\') {
            return Err(EntryNameError::Backslash);
        }
        let components: Vec<&str> = name.split('/').collect();
        if components.contains(&"..") {
            return Err(EntryNameError::Escapes);
        }
        for component in &components {
            check_component(component)?;
        }
        if name.len() > limits.max_path_bytes {
            return Err(EntryNameError::TooLong {
                len: name.len(),
                limit: limits.max_path_bytes,
            });
        }
        if components.len() > limits.max_path_depth {
            return Err(EntryNameError::TooDeep {
                depth: components.len(),
                limit: limits.max_path_depth,
            });
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path's components; each is a plain file or folder name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The name as case-insensitive, normalisation-insensitive file systems see it (NFD, full
    /// Unicode case folding, NFC): two names with the same key would land on the same file
    /// there.
    pub fn collision_key(&self) -> String {
        collision_key(&self.0)
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryName({:?})", self.0)
    }
}

/// Untrusted bytes quoted in an error message (see [`crate::shown::escaped`]).
pub(crate) use crate::shown::escaped as printable;

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's canonical caseless match (D145): NFD, full case folding (CaseFolding.txt C and
/// F, so `ς`/`σ`, `ſ`/`s`, Kelvin `K`/`k` and `ß`/`ss` fold together, as case-insensitive
/// APFS and NTFS volumes compare them or stricter), then NFC. Lowercasing missed those.
fn collision_key(name: &str) -> String {
    let decomposed: String = name.nfd().collect();
    icu_casemap::CaseMapper::new()
        .fold_string(&decomposed)
        .nfc()
        .collect()
}

fn check_component(component: &str) -> Result<(), EntryNameError> {
    match component {
        "" => return Err(EntryNameError::EmptyComponent),
        "." => return Err(EntryNameError::DotComponent),
        _ => {}
    }
    for c in component.chars() {
        if c.is_control() {
            return Err(EntryNameError::ControlCharacter);
        }
        if c == ':' {
            return Err(EntryNameError::Colon);
        }
        if is_bidi_control(c) {
            return Err(EntryNameError::BidiControl);
        }
        if matches!(c, '<' | '>' | '"' | '|' | '?' | '*') {
            return Err(EntryNameError::WindowsCharacter(c));
        }
    }
    if component.ends_with('.') || component.ends_with(' ') {
        return Err(EntryNameError::TrailingDotOrSpace);
    }
    let stem = component
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches(' ');
    let upper = stem.to_uppercase();
    let numbered = upper.starts_with("COM") || upper.starts_with("LPT");
    let is_device = matches!(
        upper.as_str(),
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$"
    ) || (numbered
        && matches!(
            upper.get(3..),
            Some("0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³")
        ));
    if is_device {
        return Err(EntryNameError::WindowsDeviceName(component.to_owned()));
    }
    Ok(())
}

/// One file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    path: EntryName,
    size: u64,
    sha256: ContentId,
}

impl FileEntry {
    pub fn new(path: EntryName, size: u64, sha256: ContentId) -> Self {
        Self { path, size, sha256 }
    }

    pub fn path(&self) -> &EntryName {
        &self.path
    }

    /// Uncompressed size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// sha256 of the uncompressed bytes.
    pub fn sha256(&self) -> ContentId {
        self.sha256
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes, limit is {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("invalid manifest JSON: {}", printable(.0.to_string().as_bytes()))]
    Json(#[from] serde_json::Error),
    #[error("manifest is not in canonical form (it must be byte for byte what qasid writes)")]
    NotCanonical,
    #[error("unsupported format {0:?} (expected \"qasid-bundle/1\")")]
    UnsupportedFormat(String),
    #[error("publisher {0:?} is not a valid public key")]
    BadPublisher(String),
    #[error("manifest names publisher {found}, expected {expected}")]
    UnexpectedPublisher { expected: KeyId, found: KeyId },
    #[error("name {0:?} is not a valid bundle name (a-z, 0-9 and -, starting with a letter or digit, at most 64)")]
    BadName(String),
    #[error("version must be at least 1")]
    BadVersion,
    #[error("created {0:?} is not a real calendar date in the form YYYY-MM-DD")]
    BadDate(String),
    #[error("{0} must be non-empty, without surrounding whitespace or control characters")]
    BadText(&'static str),
    #[error("language {0:?} is not a language tag like `en`, `fa` or `pt-BR`")]
    BadLanguage(String),
    #[error("file {path}: {reason}")]
    BadPath {
        path: String,
        reason: EntryNameError,
    },
    #[error("{count} files, limit is {limit}")]
    TooManyFiles { count: usize, limit: usize },
    #[error("{path}: {size} bytes, limit is {limit}")]
    FileTooLarge {
        path: EntryName,
        size: u64,
        limit: u64,
    },
    #[error("files add up to {total} bytes, limit is {limit}")]
    TotalTooLarge { total: u64, limit: u64 },
    #[error("{0} is listed twice")]
    DuplicatePath(EntryName),
    #[error("files are not sorted by path: {0} comes too late")]
    Unsorted(EntryName),
    #[error("{0} and {1} differ only by case or Unicode normalisation")]
    Collision(String, String),
    #[error("{0} is both a file and a folder")]
    FileFolderClash(String),
    #[error("{ARTICLE_PATH} is missing")]
    MissingArticle,
}

/// The validated contents of a bundle's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    publisher: PublicKey,
    name: String,
    version: u64,
    created: String,
    title: String,
    author: String,
    language: String,
    files: Vec<FileEntry>,
}

/// The fields of a new manifest, before validation.
#[derive(Debug, Clone)]
pub struct ManifestFields {
    pub publisher: PublicKey,
    pub name: String,
    pub version: u64,
    pub created: String,
    pub title: String,
    pub author: String,
    pub language: String,
    /// In any order: [`Manifest::new`] sorts them.
    pub files: Vec<FileEntry>,
}

/// `manifest.json` as it is on the wire. Field order here is the serialisation order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestWire {
    format: String,
    publisher: String,
    name: String,
    version: u64,
    created: String,
    title: String,
    author: String,
    language: String,
    files: Vec<FileWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    path: String,
    size: u64,
    sha256: ContentId,
}

/// Whether `name` is a valid bundle name: `[a-z0-9][a-z0-9-]{0,63}`.
pub fn is_valid_bundle_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

impl Manifest {
    /// Builds and validates a new manifest (the publisher side). Files are sorted by path.
    pub fn new(mut fields: ManifestFields, limits: &BundleLimits) -> Result<Self, ManifestError> {
        fields.files.sort_by(|a, b| a.path.cmp(&b.path));
        let manifest = Self {
            publisher: fields.publisher,
            name: fields.name,
            version: fields.version,
            created: fields.created,
            title: fields.title,
            author: fields.author,
            language: fields.language,
            files: fields.files,
        };
        manifest.validate(limits)?;
        let size = manifest.to_bytes().len() as u64;
        if size > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                size,
                limit: limits.max_manifest_bytes,
            });
        }
        Ok(manifest)
    }

    /// Parses and validates `manifest.json` bytes. The bytes must be exactly what
    /// [`Manifest::to_bytes`] produces for the parsed value, so a manifest has one encoding.
    pub fn parse(bytes: &[u8], limits: &BundleLimits) -> Result<Self, ManifestError> {
        Self::parse_inner(bytes, None, limits)
    }

    /// Like [`Manifest::parse`], but refuses a manifest naming any publisher other than
    /// `expected` before looking at the rest of it.
    pub(crate) fn parse_from(
        bytes: &[u8],
        expected: &PublicKey,
        limits: &BundleLimits,
    ) -> Result<Self, ManifestError> {
        Self::parse_inner(bytes, Some(expected), limits)
    }

    fn parse_inner(
        bytes: &[u8],
        expected: Option<&PublicKey>,
        limits: &BundleLimits,
    ) -> Result<Self, ManifestError> {
        let size = bytes.len() as u64;
        if size > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                size,
                limit: limits.max_manifest_bytes,
            });
        }
        let wire: ManifestWire = serde_json::from_slice(bytes)?;
        let publisher = PublicKey::from_base64(&wire.publisher)
            .map_err(|_| ManifestError::BadPublisher(wire.publisher.clone()))?;
        if let Some(expected) = expected {
            if &publisher != expected {
                return Err(ManifestError::UnexpectedPublisher {
                    expected: expected.id(),
                    found: publisher.id(),
                });
            }
        }
        if wire.format != FORMAT {
            return Err(ManifestError::UnsupportedFormat(wire.format));
        }
        if wire.files.len() > limits.max_entries {
            return Err(ManifestError::TooManyFiles {
                count: wire.files.len(),
                limit: limits.max_entries,
            });
        }
        let files = wire
            .files
            .into_iter()
            .map(|f| {
                let path =
                    EntryName::new(&f.path, limits).map_err(|reason| ManifestError::BadPath {
                        path: printable(f.path.as_bytes()),
                        reason,
                    })?;
                Ok(FileEntry::new(path, f.size, f.sha256))
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        let manifest = Self {
            publisher,
            name: wire.name,
            version: wire.version,
            created: wire.created,
            title: wire.title,
            author: wire.author,
            language: wire.language,
            files,
        };
        manifest.validate(limits)?;
        if manifest.to_bytes() != bytes {
            return Err(ManifestError::NotCanonical);
        }
        Ok(manifest)
    }

    /// Every rule except the encoding ones; shared by [`Manifest::new`] and parsing.
    fn validate(&self, limits: &BundleLimits) -> Result<(), ManifestError> {
        if !is_valid_bundle_name(&self.name) {
            return Err(ManifestError::BadName(self.name.clone()));
        }
        if self.version == 0 {
            return Err(ManifestError::BadVersion);
        }
        if !article::is_valid_date(&self.created) {
            return Err(ManifestError::BadDate(self.created.clone()));
        }
        if !article::is_valid_text_value(&self.title) {
            return Err(ManifestError::BadText("title"));
        }
        if !article::is_valid_text_value(&self.author) {
            return Err(ManifestError::BadText("author"));
        }
        if !article::is_valid_language(&self.language) {
            return Err(ManifestError::BadLanguage(self.language.clone()));
        }
        validate_files(&self.files, limits)
    }

    /// The canonical `manifest.json`: pretty JSON (two-space indent) with fields in format
    /// order, then a newline. Deterministic: equal manifests give equal bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = ManifestWire {
            format: FORMAT.to_owned(),
            publisher: self.publisher.to_base64(),
            name: self.name.clone(),
            version: self.version,
            created: self.created.clone(),
            title: self.title.clone(),
            author: self.author.clone(),
            language: self.language.clone(),
            files: self
                .files
                .iter()
                .map(|f| FileWire {
                    path: f.path.as_str().to_owned(),
                    size: f.size,
                    sha256: f.sha256,
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&wire)
            .expect("serialising strings and integers to a Vec cannot fail");
        bytes.push(b'\n');
        bytes
    }

    pub fn publisher_key(&self) -> PublicKey {
        self.publisher.clone()
    }

    /// The bundle's name, `[a-z0-9][a-z0-9-]{0,63}`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// At least 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The article's date, `YYYY-MM-DD`.
    pub fn created(&self) -> &str {
        &self.created
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn author(&self) -> &str {
        &self.author
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    /// Sorted by path bytes, unique and collision-free; always includes `article.md`.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The sum of the files' uncompressed sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

fn validate_files(files: &[FileEntry], limits: &BundleLimits) -> Result<(), ManifestError> {
    if files.len() > limits.max_entries {
        return Err(ManifestError::TooManyFiles {
            count: files.len(),
            limit: limits.max_entries,
        });
    }
    let mut total: u64 = 0;
    for (i, file) in files.iter().enumerate() {
        if file.size > limits.max_file_bytes {
            return Err(ManifestError::FileTooLarge {
                path: file.path.clone(),
                size: file.size,
                limit: limits.max_file_bytes,
            });
        }
        total = total.saturating_add(file.size);
        if total > limits.max_total_bytes {
            return Err(ManifestError::TotalTooLarge {
                total,
                limit: limits.max_total_bytes,
            });
        }
        if let Some(previous) = i.checked_sub(1).map(|p| &files[p].path) {
            match previous.cmp(&file.path) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ManifestError::DuplicatePath(file.path.clone()))
                }
                std::cmp::Ordering::Greater => {
                    return Err(ManifestError::Unsorted(file.path.clone()))
                }
            }
        }
    }
    check_collisions(files)?;
    if files
        .binary_search_by(|f| f.path.as_str().cmp(ARTICLE_PATH))
        .is_err()
    {
        return Err(ManifestError::MissingArticle);
    }
    Ok(())
}

/// Refuses two files, or two folders, whose names differ only by case or normalisation, and a
/// name used both as a file and as a folder: either would make extraction on some systems
/// overwrite or fail.
fn check_collisions(files: &[FileEntry]) -> Result<(), ManifestError> {
    // collision key -> (original name, is a folder)
    let mut seen: HashMap<String, (&str, bool)> = HashMap::new();
    for file in files {
        let path = file.path.as_str();
        let folder_ends = path.match_indices('/').map(|(i, _)| (i, true));
        for (end, is_folder) in folder_ends.chain([(path.len(), false)]) {
            let name = &path[..end];
            match seen.insert(collision_key(name), (name, is_folder)) {
                None => {}
                Some((other, other_is_folder)) if other == name && other_is_folder && is_folder => {
                }
                Some((_, other_is_folder)) if other_is_folder != is_folder => {
                    return Err(ManifestError::FileFolderClash(name.to_owned()));
                }
                Some((other, _)) => {
                    return Err(ManifestError::Collision(other.to_owned(), name.to_owned()));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn limits() -> BundleLimits {
        BundleLimits::default()
    }

    fn name(s: &str) -> EntryName {
        EntryName::new(s, &limits()).unwrap()
    }

    fn file(path: &str, size: u64) -> FileEntry {
        FileEntry::new(name(path), size, ContentId::of_bytes(path.as_bytes()))
    }

    fn fields(files: Vec<FileEntry>) -> ManifestFields {
        ManifestFields {
            publisher: SecretKey::from_seed(&[9; 32]).public().clone(),
            name: "hello".into(),
            version: 1,
            created: "2026-01-02".into(),
            title: "Hello \"world\"".into(),
            author: "نویسنده".into(),
            language: "fa".into(),
            files,
        }
    }

    #[test]
    fn entry_name_rules() {
        let l = limits();
        let bad: &[(&str, EntryNameError)] = &[
            ("", EntryNameError::Empty),
            ("/etc/passwd", EntryNameError::Absolute),
            ("a\\b", EntryNameError::Backslash),
            ("../../etc/passwd", EntryNameError::Escapes),
            ("a/../b", EntryNameError::Escapes),
            ("./a", EntryNameError::DotComponent),
            ("a//b", EntryNameError::EmptyComponent),
            ("a/", EntryNameError::EmptyComponent),
            ("a\0b", EntryNameError::ControlCharacter),
            ("a\nb", EntryNameError::ControlCharacter),
            ("a\u{85}b", EntryNameError::ControlCharacter),
            ("c:evil", EntryNameError::Colon),
            ("photo\u{202E}gnp.exe", EntryNameError::BidiControl),
            ("what?.txt", EntryNameError::WindowsCharacter('?')),
            (
                "images/aux.png",
                EntryNameError::WindowsDeviceName("aux.png".into()),
            ),
            ("COM1", EntryNameError::WindowsDeviceName("COM1".into())),
            (
                "lpt9.txt",
                EntryNameError::WindowsDeviceName("lpt9.txt".into()),
            ),
            ("a.", EntryNameError::TrailingDotOrSpace),
            ("a ", EntryNameError::TrailingDotOrSpace),
        ];
        for (input, expected) in bad {
            assert_eq!(
                &EntryName::new(input, &l).unwrap_err(),
                expected,
                "{input:?}"
            );
        }
        let long = "a".repeat(256);
        assert_eq!(
            EntryName::new(&long, &l).unwrap_err(),
            EntryNameError::TooLong {
                len: 256,
                limit: 255
            }
        );
        let deep = vec!["a"; 17].join("/");
        assert_eq!(
            EntryName::new(&deep, &l).unwrap_err(),
            EntryNameError::TooDeep {
                depth: 17,
                limit: 16
            }
        );
        for good in [
            ".hidden",
            "a/b/c.png",
            "تصاویر/عکس.jpg",
            "a..b",
            "console.md",
            "com10",
            "x y",
        ] {
            assert!(EntryName::new(good, &l).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn collision_key_folds_final_sigma_long_s_kelvin_and_sharp_s() {
        for (a, b) in [
            ("\u{3c3}.txt", "\u{3c2}.txt"),
            ("\u{17f}.txt", "s.txt"),
            ("\u{212a}.txt", "k.txt"),
            ("stra\u{df}e", "STRASSE"),
            ("\u{1e9e}", "\u{df}"),
            ("\u{130}", "i\u{307}"),
        ] {
            assert_eq!(name(a).collision_key(), name(b).collision_key(), "{a} {b}");
        }
        assert_ne!(name("a").collision_key(), name("b").collision_key());
    }

    #[test]
    fn collision_key_folds_case_and_normalisation() {
        assert_eq!(
            name("Images/A.png").collision_key(),
            name("images/a.png").collision_key()
        );
        assert_eq!(
            name("caf\u{e9}").collision_key(),
            name("cafe\u{301}").collision_key()
        );
    }

    #[test]
    fn bytes_are_canonical_and_round_trip() {
        let manifest = Manifest::new(
            fields(vec![file("images/b.png", 5), file("article.md", 3)]),
            &limits(),
        )
        .unwrap();
        let bytes = manifest.to_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        let order: Vec<usize> = [
            "\"format\"",
            "\"publisher\"",
            "\"name\"",
            "\"version\"",
            "\"created\"",
            "\"title\"",
            "\"author\"",
            "\"language\"",
            "\"files\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.starts_with("{\n  \"format\": \"qasid-bundle/1\",\n"));
        assert!(text.ends_with("}\n"));
        assert!(text.contains("نویسنده"));
        assert_eq!(manifest.files()[0].path().as_str(), "article.md");
        let parsed = Manifest::parse(&bytes, &limits()).unwrap();
        assert_eq!(parsed, manifest);
        assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn parse_refuses_non_canonical_and_unknown_fields() {
        let manifest = Manifest::new(fields(vec![file("article.md", 3)]), &limits()).unwrap();
        let text = String::from_utf8(manifest.to_bytes()).unwrap();
        let compact =
            serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap();
        assert!(matches!(
            Manifest::parse(&compact, &limits()),
            Err(ManifestError::NotCanonical)
        ));
        let extra = text.replacen("{\n", "{\n  \"extra\": 1,\n", 1);
        assert!(matches!(
            Manifest::parse(extra.as_bytes(), &limits()),
            Err(ManifestError::Json(_))
        ));
        let dup = text.replacen("{\n", "{\n  \"name\": \"other\",\n", 1);
        assert!(matches!(
            Manifest::parse(dup.as_bytes(), &limits()),
            Err(ManifestError::Json(_))
        ));
    }

    #[test]
    fn file_list_rules() {
        let l = limits();
        let check = |files: Vec<FileEntry>| Manifest::new(fields(files), &l).unwrap_err();
        assert!(matches!(
            check(vec![file("a.png", 1)]),
            ManifestError::MissingArticle
        ));
        assert!(matches!(
            check(vec![file("article.md", 1), file("article.md", 1)]),
            ManifestError::DuplicatePath(_)
        ));
        assert!(matches!(
            check(vec![
                file("article.md", 1),
                file("images/A.png", 1),
                file("images/a.png", 1)
            ]),
            ManifestError::Collision(..)
        ));
        assert!(matches!(
            check(vec![
                file("article.md", 1),
                file("Images/a.png", 1),
                file("images/b.png", 1)
            ]),
            ManifestError::Collision(..)
        ));
        assert!(matches!(
            check(vec![
                file("article.md", 1),
                file("caf\u{e9}.txt", 1),
                file("cafe\u{301}.txt", 1)
            ]),
            ManifestError::Collision(..)
        ));
        assert!(matches!(
            check(vec![
                file("article.md", 1),
                file("images", 1),
                file("images/a.png", 1)
            ]),
            ManifestError::FileFolderClash(_)
        ));
        assert!(matches!(
            check(vec![file("article.md", l.max_file_bytes + 1)]),
            ManifestError::FileTooLarge { .. }
        ));
        assert!(matches!(
            check(vec![
                file("article.md", l.max_file_bytes),
                file("b", l.max_file_bytes)
            ]),
            ManifestError::TotalTooLarge { .. }
        ));
        let small = BundleLimits {
            max_entries: 1,
            ..limits()
        };
        assert!(matches!(
            Manifest::new(fields(vec![file("article.md", 1), file("b", 1)]), &small),
            Err(ManifestError::TooManyFiles { count: 2, limit: 1 })
        ));
        Manifest::new(
            fields(vec![
                file("article.md", 1),
                file("images/a.png", 1),
                file("images/b/c.png", 1),
            ]),
            &l,
        )
        .unwrap();
    }

    #[test]
    fn field_rules() {
        let l = limits();
        let mut f = fields(vec![file("article.md", 1)]);
        f.name = "Hello".into();
        assert!(matches!(
            Manifest::new(f, &l),
            Err(ManifestError::BadName(_))
        ));
        let mut f = fields(vec![file("article.md", 1)]);
        f.version = 0;
        assert!(matches!(
            Manifest::new(f, &l),
            Err(ManifestError::BadVersion)
        ));
        let mut f = fields(vec![file("article.md", 1)]);
        f.created = "2026-02-30".into();
        assert!(matches!(
            Manifest::new(f, &l),
            Err(ManifestError::BadDate(_))
        ));
        let mut f = fields(vec![file("article.md", 1)]);
        f.title = " padded".into();
        assert!(matches!(
            Manifest::new(f, &l),
            Err(ManifestError::BadText("title"))
        ));
        for good in ["a", "0-day", &"a".repeat(64)] {
            assert!(is_valid_bundle_name(good), "{good}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", &"a".repeat(65)] {
            assert!(!is_valid_bundle_name(bad), "{bad}");
        }
    }

    #[test]
    fn unexpected_publisher_is_refused_first() {
        let manifest = Manifest::new(fields(vec![file("article.md", 3)]), &limits()).unwrap();
        let other = SecretKey::from_seed(&[8; 32]).public().clone();
        assert!(matches!(
            Manifest::parse_from(&manifest.to_bytes(), &other, &limits()),
            Err(ManifestError::UnexpectedPublisher { .. })
        ));
    }
}
