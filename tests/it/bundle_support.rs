//! Shared helpers for the bundle tests: article folders, fixed keys, and a raw zip builder that
//! writes any shape (valid or hostile) byte by byte, independently of qasid's own writer.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use qasid::bundle::{self, BundleError, CreateOptions, CreatedBundle};
use qasid::keys::{Domain, PublicKey, SecretKey};
use qasid::limits::BundleLimits;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const ARTICLE: &str = "---\ntitle: Mirrors keep the news alive\nauthor: Qasid Desk\ndate: 2026-03-01\nlanguage: en\n---\n\nWhen a site is blocked, its readers can still fetch signed copies.\n";

/// The publisher key used throughout the tests.
pub fn key() -> SecretKey {
    SecretKey::from_seed(&[0x42; 32])
}

/// Some other publisher.
pub fn other_key() -> SecretKey {
    SecretKey::from_seed(&[0x07; 32])
}

/// Writes `files` (relative path, contents) under `dir`, creating folders.
pub fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    for (path, contents) in files {
        let path = dir.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }
}

/// A typical article folder: `article.md`, a stored image and a deflated stylesheet.
pub fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    let image: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    vec![
        ("article.md", ARTICLE.as_bytes().to_vec()),
        ("images/map.png", image),
        (
            "style.css",
            b"body { direction: rtl; font-family: serif; }\n".repeat(3),
        ),
    ]
}

/// Creates `root/<name>` holding `files`.
pub fn article_folder(root: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let borrowed: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (*p, c.as_slice())).collect();
    write_files(&dir, &borrowed);
    dir
}

/// A bundle made by qasid from the sample folder, in its own temp dir.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub created: CreatedBundle,
}

impl Built {
    pub fn bytes(&self) -> Vec<u8> {
        fs::read(self.created.path()).unwrap()
    }
}

pub fn build_sample() -> Built {
    let dir = tempfile::tempdir().unwrap();
    let src = article_folder(dir.path(), "mirror-news", &sample_files());
    let created = bundle::create(
        &src,
        &key(),
        &dir.path().join("mirror-news.zip"),
        &CreateOptions::default(),
    )
    .unwrap();
    Built { dir, created }
}

/// Runs every verifying entry point on `bytes` and checks they all refuse it the same way and
/// that extraction left nothing behind. Returns the error for the caller to match.
pub fn reject(bytes: &[u8], publisher: &PublicKey, limits: &BundleLimits) -> BundleError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.zip");
    fs::write(&path, bytes).unwrap();
    let from_reader = bundle::verify_reader(bytes, publisher, limits)
        .expect_err("verify_reader accepted a hostile bundle");
    let from_file = bundle::verify_file(&path, publisher, limits)
        .expect_err("verify_file accepted a hostile bundle");
    assert_eq!(from_reader.to_string(), from_file.to_string());
    let out_parent = dir.path().join("out");
    fs::create_dir(&out_parent).unwrap();
    let out = out_parent.join("article");
    let extracted = bundle::extract_verified(&path, publisher, limits, &out)
        .expect_err("extract_verified accepted a hostile bundle");
    assert_eq!(from_reader.to_string(), extracted.to_string());
    assert!(!out.exists(), "a rejected bundle was extracted");
    assert_eq!(
        fs::read_dir(&out_parent).unwrap().count(),
        0,
        "extraction left files behind"
    );
    let read = bundle::read_article(&path, publisher, limits)
        .expect_err("read_article accepted a hostile bundle");
    assert_eq!(from_reader.to_string(), read.to_string());
    from_reader
}

/// [`reject`] with the test key and default limits.
pub fn reject_default(bytes: &[u8]) -> BundleError {
    reject(bytes, key().public(), &BundleLimits::default())
}

// ---- raw zip writing ----

pub const METHOD_STORED: u16 = 0;
pub const METHOD_DEFLATE: u16 = 8;
/// `-rw-r--r--` regular file, as qasid writes it.
pub const REGULAR_FILE: u32 = 0o100644 << 16;

/// One zip entry, every header field settable. `data` is what is stored in the zip (compressed
/// bytes for deflate).
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
    pub method: u16,
    pub flags: u16,
    pub version_needed: u16,
    pub version_made_by: u16,
    pub time: u16,
    pub date: u16,
    pub crc32: u32,
    pub compressed_size: u32,
    pub size: u32,
    pub extra: Vec<u8>,
    pub external_attributes: u32,
    pub comment: Vec<u8>,
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::new(6));
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

impl RawEntry {
    pub fn stored(name: &str, content: &[u8]) -> Self {
        Self::with_data(name.as_bytes(), content, content.to_vec(), METHOD_STORED)
    }

    pub fn deflated(name: &str, content: &[u8]) -> Self {
        Self::with_data(name.as_bytes(), content, deflate(content), METHOD_DEFLATE)
    }

    fn with_data(name: &[u8], content: &[u8], data: Vec<u8>, method: u16) -> Self {
        let version = if method == METHOD_DEFLATE { 20 } else { 10 };
        Self {
            name: name.to_vec(),
            method,
            flags: if name.is_ascii() { 0 } else { 1 << 11 },
            version_needed: version,
            version_made_by: 0x0300 | version,
            time: 0,
            date: 0x21,
            crc32: crc32(content),
            compressed_size: data.len() as u32,
            size: content.len() as u32,
            data,
            extra: Vec::new(),
            external_attributes: REGULAR_FILE,
            comment: Vec::new(),
        }
    }

    /// Replaces the content, keeping the method, and fixes crc and sizes.
    pub fn set_content(&mut self, content: &[u8]) {
        let replacement = if self.method == METHOD_DEFLATE {
            Self::deflated("x", content)
        } else {
            Self::stored("x", content)
        };
        self.data = replacement.data;
        self.crc32 = replacement.crc32;
        self.compressed_size = replacement.compressed_size;
        self.size = replacement.size;
    }

    fn local_header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"PK\x03\x04");
        for v in [
            self.version_needed,
            self.flags,
            self.method,
            self.time,
            self.date,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.crc32, self.compressed_size, self.size] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(self.extra.len() as u16).to_le_bytes());
        h.extend_from_slice(&self.name);
        h.extend_from_slice(&self.extra);
        h
    }

    fn central_record(&self, offset: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"PK\x01\x02");
        for v in [
            self.version_made_by,
            self.version_needed,
            self.flags,
            self.method,
            self.time,
            self.date,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.crc32, self.compressed_size, self.size] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.name.len() as u16,
            self.extra.len() as u16,
            self.comment.len() as u16,
            0, // disk number start
            0, // internal attributes
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h.extend_from_slice(&self.external_attributes.to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(&self.name);
        h.extend_from_slice(&self.extra);
        h.extend_from_slice(&self.comment);
        h
    }
}

/// A whole zip file. `central`, when set, replaces the central directory records (default: one
/// per entry, matching it).
#[derive(Debug, Clone, Default)]
pub struct RawZip {
    pub prefix: Vec<u8>,
    pub entries: Vec<RawEntry>,
    /// Bytes inserted after entry `.0`'s data.
    pub gap: Option<(usize, Vec<u8>)>,
    pub central: Option<Vec<RawEntry>>,
    pub comment: Vec<u8>,
    pub trailing: Vec<u8>,
}

impl RawZip {
    pub fn new(entries: Vec<RawEntry>) -> Self {
        Self {
            entries,
            ..Self::default()
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.prefix.clone();
        let mut offsets = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            offsets.push(out.len() as u32);
            out.extend_from_slice(&entry.local_header());
            out.extend_from_slice(&entry.data);
            if let Some((after, gap)) = &self.gap {
                if *after == i {
                    out.extend_from_slice(gap);
                }
            }
        }
        let central_start = out.len() as u32;
        let records = self.central.as_ref().unwrap_or(&self.entries);
        for (i, entry) in records.iter().enumerate() {
            let offset = offsets.get(i).copied().unwrap_or(0);
            out.extend_from_slice(&entry.central_record(offset));
        }
        let central_size = out.len() as u32 - central_start;
        out.extend_from_slice(b"PK\x05\x06");
        for v in [0u16, 0, records.len() as u16, records.len() as u16] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&central_size.to_le_bytes());
        out.extend_from_slice(&central_start.to_le_bytes());
        out.extend_from_slice(&(self.comment.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.comment);
        out.extend_from_slice(&self.trailing);
        out
    }
}

/// The entries of any zip, read with the zip crate (an independent reader), as raw entries with
/// the same names, methods and contents.
pub fn entries_of(zip_bytes: &[u8]) -> Vec<RawEntry> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            match file.compression() {
                zip::CompressionMethod::Stored => RawEntry::stored(file.name(), &content),
                _ => RawEntry::deflated(file.name(), &content),
            }
        })
        .collect()
}

/// Content of the raw entry named `name`, decompressed.
pub fn content_of(entries: &[RawEntry], name: &str) -> Vec<u8> {
    let entry = entries.iter().find(|e| e.name == name.as_bytes()).unwrap();
    if entry.method == METHOD_DEFLATE {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&entry.data[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        entry.data.clone()
    }
}

// ---- hand-made manifests, written the way the format document describes them ----

#[derive(Serialize)]
struct ManifestJson<'a> {
    format: &'a str,
    publisher: String,
    name: &'a str,
    version: u64,
    created: &'a str,
    title: &'a str,
    author: &'a str,
    language: &'a str,
    files: Vec<FileJson>,
}

#[derive(Serialize)]
struct FileJson {
    path: String,
    size: u64,
    sha256: String,
}

/// The canonical manifest JSON for `files` (listed in the given order, with their real sizes
/// and hashes unless `sizes` overrides a size).
pub fn manifest_json(publisher: &PublicKey, files: &[(&str, &[u8])]) -> Vec<u8> {
    manifest_json_with(publisher, files, |_, size| size)
}

/// Like [`manifest_json`], with `size_of(path, real size)` choosing each listed size.
pub fn manifest_json_with(
    publisher: &PublicKey,
    files: &[(&str, &[u8])],
    size_of: impl Fn(&str, u64) -> u64,
) -> Vec<u8> {
    let manifest = ManifestJson {
        format: "qasid-bundle/1",
        publisher: publisher.to_base64(),
        name: "hostile",
        version: 1,
        created: "2026-03-01",
        title: "Mirrors keep the news alive",
        author: "Qasid Desk",
        language: "en",
        files: files
            .iter()
            .map(|(path, content)| FileJson {
                path: path.to_string(),
                size: size_of(path, content.len() as u64),
                sha256: hex::encode(Sha256::digest(content)),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    bytes.push(b'\n');
    bytes
}

/// The two metadata entries for `manifest`, signed by `signer`.
pub fn signed_metadata(signer: &SecretKey, manifest: &[u8]) -> Vec<RawEntry> {
    vec![
        RawEntry::stored("manifest.json", manifest),
        RawEntry::stored(
            "manifest.sig",
            &signer.sign(Domain::BundleManifest, manifest),
        ),
    ]
}

/// Whether qasid deflates a file with this name.
pub fn is_text_like(path: &str) -> bool {
    let ext = path
        .rsplit('/')
        .next()
        .unwrap()
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase());
    matches!(
        ext.as_deref(),
        Some("md" | "txt" | "html" | "htm" | "css" | "svg" | "json" | "xml" | "csv")
    )
}

/// A complete, valid bundle of `files` (which must be sorted), built from scratch by the raw
/// writer and signed with the test key.
pub fn raw_bundle(files: &[(&str, &[u8])]) -> Vec<RawEntry> {
    let mut entries = signed_metadata(&key(), &manifest_json(key().public(), files));
    entries.extend(
        files
            .iter()
            .map(|(path, content)| file_entry(path, content)),
    );
    entries
}

/// The zip entry for a manifest file, compressed the way qasid compresses it.
pub fn file_entry(path: &str, content: &[u8]) -> RawEntry {
    let name = format!("files/{path}");
    if is_text_like(path) {
        RawEntry::deflated(&name, content)
    } else {
        RawEntry::stored(&name, content)
    }
}

/// The files of the smallest useful bundle.
pub fn minimal_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("article.md", ARTICLE.as_bytes()),
        ("images/a.png", b"\x89PNG not really"),
    ]
}
