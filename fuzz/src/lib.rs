//! Shared helpers for qasid's fuzz targets: the test key, "fix-ups" that re-sign fuzzed
//! documents so the fuzzer gets past signature checks, and the invariants every accepted
//! bundle must satisfy.
//!
//! A fuzzer cannot forge an ed25519 signature, so a target that only fed raw bytes to a
//! verifier would never see anything past the signature check. The targets therefore run
//! each input twice: as it is (which exercises everything before the signature, and, for
//! mutations outside the signed part of a seed, everything after it), and after a fix-up that
//! signs whatever the input contains with the test key (which exercises every parser and rule
//! behind the signature, and lets the targets assert what must hold for accepted input).
//!
//! Nothing here is used by qasid itself.

use std::collections::HashSet;
use std::io::{Cursor, Read as _};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use qasid::bundle::VerifiedBundle;
use qasid::content_id::ContentId;
use qasid::keys::{Domain, PublicKey, SecretKey};
use qasid::limits::BundleLimits;
use qasid::manifest::{EntryName, Manifest};

/// The test vector key (seed `0x42` × 32, docs/FORMAT.md §5). Every seed is signed with it.
pub fn secret_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::from_seed(&[0x42; 32]))
}

pub fn public_key() -> &'static PublicKey {
    secret_key().public()
}

/// Panics if `text` (an error message or other text qasid shows to a person) contains a
/// control character or a bidirectional control: untrusted bytes must never reach a terminal
/// or log raw, where they could move the cursor, recolour or reorder what the reader sees.
pub fn assert_printable(what: &str, text: &str) {
    if let Some(c) = text.chars().find(|&c| c.is_control() || is_bidi_control(c)) {
        panic!("{what}: message contains the raw character {c:?}: {text:?}");
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The `index.json` envelope for `head` bytes, signed with the test key exactly as a publisher
/// signs (compact JSON, members in documented order, one trailing newline).
pub fn sign_envelope(head: &[u8]) -> Vec<u8> {
    let signature = secret_key().sign(Domain::IndexHead, head);
    let mut envelope = serde_json::to_vec(&serde_json::json!({
        "format": "qasid-index-envelope/1",
        "head": B64.encode(head),
        "signature": B64.encode(signature),
    }))
    .expect("serialising strings cannot fail");
    envelope.push(b'\n');
    envelope
}

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
/// Entries inflated by the fix-up are capped here: fuzz inputs are small, and a zip bomb in an
/// input must not stall the harness before the verifier even sees it.
const FIXUP_INFLATE_CAP: u64 = 4 << 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One local entry as the fix-up sees it (loosely: it trusts the header's sizes).
struct LooseEntry {
    header: usize,
    name: Vec<u8>,
    method: u16,
    data: std::ops::Range<usize>,
    size: u32,
}

fn local_entries(zip: &[u8]) -> Vec<LooseEntry> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while u32_at(zip, pos) == Some(LOCAL_SIG) {
        let (Some(method), Some(csize), Some(size), Some(nlen), Some(xlen)) = (
            u16_at(zip, pos + 8),
            u32_at(zip, pos + 18),
            u32_at(zip, pos + 22),
            u16_at(zip, pos + 26),
            u16_at(zip, pos + 28),
        ) else {
            break;
        };
        let name_start = pos + 30;
        let data_start = name_start + usize::from(nlen) + usize::from(xlen);
        let data_end = data_start.saturating_add(csize as usize);
        if data_end > zip.len() {
            break;
        }
        entries.push(LooseEntry {
            header: pos,
            name: zip[name_start..name_start + usize::from(nlen)].to_vec(),
            method,
            data: data_start..data_end,
            size,
        });
        pos = data_end;
    }
    entries
}

/// The uncompressed bytes of an entry, if they can be had cheaply.
fn entry_content(zip: &[u8], entry: &LooseEntry) -> Option<Vec<u8>> {
    let raw = &zip[entry.data.clone()];
    match entry.method {
        0 => Some(raw.to_vec()),
        8 => {
            let cap = u64::from(entry.size).min(FIXUP_INFLATE_CAP) + 1;
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(raw)
                .take(cap)
                .read_to_end(&mut out)
                .ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// Makes a fuzzed zip "authentic" wherever it can: every `files/` entry's sha256 is written
/// into the manifest (where the manifest lists that path; the hex has a fixed length, so no
/// offset moves), every entry's crc32 is set in its local header and central record, and
/// `manifest.sig` becomes the test key's signature over the (patched) `manifest.json`. What the
/// fuzzer did to the structure stays: only checksums and the signature are made to match.
pub fn fixup_bundle(input: &[u8]) -> Vec<u8> {
    let mut zip = input.to_vec();
    let entries = local_entries(&zip);
    let manifest = entries
        .first()
        .filter(|e| e.name == b"manifest.json" && e.method == 0)
        .map(|e| e.data.clone());

    // 1. File hashes into the manifest.
    if let Some(range) = &manifest {
        for entry in entries.iter().skip(2) {
            let Some(path) = entry.name.strip_prefix(b"files/") else {
                continue;
            };
            let (Ok(path), Some(content)) = (std::str::from_utf8(path), entry_content(&zip, entry))
            else {
                continue;
            };
            let digest = hex(&Sha256::digest(&content));
            let needle = format!("\"path\": {},", serde_json::to_string(path).unwrap());
            let text = &zip[range.clone()];
            let Some(at) = find(text, needle.as_bytes()) else {
                continue;
            };
            let key = b"\"sha256\": \"";
            let Some(rel) = find(&text[at..], key) else {
                continue;
            };
            let hex_at = range.start + at + rel + key.len();
            if hex_at + 64 <= range.end {
                zip[hex_at..hex_at + 64].copy_from_slice(digest.as_bytes());
            }
        }
    }

    // 2. The signature over the manifest.
    if let (Some(range), Some(sig)) = (&manifest, entries.get(1)) {
        if sig.name == b"manifest.sig" && sig.method == 0 && sig.data.len() == 64 {
            let signature = secret_key().sign(Domain::BundleManifest, &zip[range.clone()]);
            zip[sig.data.clone()].copy_from_slice(&signature);
        }
    }

    // 3. CRCs, local and central, matched by position.
    let crcs: Vec<Option<u32>> = entries
        .iter()
        .map(|e| {
            entry_content(&zip, e).map(|c| {
                let mut crc = flate2::Crc::new();
                crc.update(&c);
                crc.sum()
            })
        })
        .collect();
    for (entry, crc) in entries.iter().zip(&crcs) {
        if let Some(crc) = crc {
            zip[entry.header + 14..entry.header + 18].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let mut pos = entries.last().map_or(0, |e| e.data.end);
    let mut index = 0;
    while u32_at(&zip, pos) == Some(CENTRAL_SIG) {
        let (Some(n), Some(x), Some(c)) = (
            u16_at(&zip, pos + 28),
            u16_at(&zip, pos + 30),
            u16_at(&zip, pos + 32),
        ) else {
            break;
        };
        if let Some(Some(crc)) = crcs.get(index) {
            if pos + 20 <= zip.len() {
                zip[pos + 16..pos + 20].copy_from_slice(&crc.to_le_bytes());
            }
        }
        index += 1;
        pos += 46 + usize::from(n) + usize::from(x) + usize::from(c);
    }
    zip
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything that must hold for a bundle `verify_reader` accepted from `zip_bytes` with the
/// test key: the manifest is canonical and re-encodes to the signed bytes, every path is a
/// valid, collision-free `EntryName`, and an independent zip reader (the `zip` crate, which
/// reads the central directory) sees exactly the same entries with exactly the same contents.
pub fn check_accepted_bundle(zip_bytes: &[u8], verified: &VerifiedBundle, limits: &BundleLimits) {
    let key = public_key();
    let manifest = verified.manifest();
    let manifest_bytes = manifest.to_bytes();
    assert_eq!(verified.publisher(), key);
    assert_eq!(&manifest.publisher_key(), key);
    assert_eq!(
        verified.manifest_id(),
        ContentId::of_bytes(&manifest_bytes),
        "the accepted manifest does not re-encode to the signed bytes"
    );
    let reparsed = Manifest::parse(&manifest_bytes, limits).expect("canonical bytes re-parse");
    assert_eq!(&reparsed, manifest);
    check_manifest_rules(manifest, limits);

    let mut archive = zip::ZipArchive::new(Cursor::new(zip_bytes))
        .expect("a verified bundle must open with a standard zip reader");
    assert_eq!(archive.len(), manifest.files().len() + 2, "entry count");
    assert_eq!(archive.comment(), b"", "zip comment");
    let mut read = |i: usize| {
        let mut file = archive.by_index(i).expect("entry readable");
        assert!(file.is_file(), "entry {i} is not a plain file");
        assert!(
            file.enclosed_name().is_some(),
            "zip crate finds entry {i} unsafe"
        );
        let mut content = Vec::new();
        file.read_to_end(&mut content).expect("entry data readable");
        (file.name().to_owned(), content)
    };
    assert_eq!(
        read(0),
        ("manifest.json".to_owned(), manifest_bytes.clone())
    );
    let (name, sig) = read(1);
    assert_eq!(name, "manifest.sig");
    let sig: [u8; 64] = sig.try_into().expect("manifest.sig is 64 bytes");
    key.verify(Domain::BundleManifest, &manifest_bytes, &sig)
        .expect("the zip crate's manifest.sig verifies");
    for (i, file) in manifest.files().iter().enumerate() {
        let (name, content) = read(i + 2);
        assert_eq!(name, format!("files/{}", file.path()));
        assert_eq!(content.len() as u64, file.size(), "{name}: size");
        assert_eq!(
            ContentId::of_bytes(&content),
            file.sha256(),
            "{name}: sha256"
        );
    }
}

/// The manifest rules, re-checked independently of `manifest.rs`.
pub fn check_manifest_rules(manifest: &Manifest, limits: &BundleLimits) {
    let files = manifest.files();
    assert!(!files.is_empty() && files.len() <= limits.max_entries);
    assert!(manifest.version() >= 1);
    assert!(qasid::manifest::is_valid_bundle_name(manifest.name()));
    assert!(manifest.total_size() <= limits.max_total_bytes);
    assert!(files.iter().any(|f| f.path().as_str() == "article.md"));
    for pair in files.windows(2) {
        assert!(pair[0].path().as_str().as_bytes() < pair[1].path().as_str().as_bytes());
    }
    let mut seen_files = HashSet::new();
    let mut seen_folders = HashSet::new();
    for file in files {
        let path = file.path().as_str();
        let again = EntryName::new(path, limits).expect("accepted path is a valid EntryName");
        assert_eq!(&again, file.path());
        assert!(file.size() <= limits.max_file_bytes);
        assert!(!path.starts_with('/') && !path.contains('\\') && !path.contains('\0'));
        assert!(path.len() <= limits.max_path_bytes);
        let parts: Vec<&str> = path.split('/').collect();
        assert!(parts.len() <= limits.max_path_depth);
        assert!(parts
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".."));
        assert!(
            seen_files.insert(fold(path)),
            "{path}: collides with another file"
        );
        for end in path.match_indices('/').map(|(i, _)| i) {
            seen_folders.insert(fold(&path[..end]));
        }
    }
    assert!(
        seen_files.is_disjoint(&seen_folders),
        "a name is both a file and a folder"
    );
}

/// Case and normalisation folding (NFC, lowercase, NFC), as docs/FORMAT.md §2.2 defines a
/// collision, computed here rather than with `EntryName::collision_key`.
fn fold(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    let lower = name.nfc().collect::<String>().to_lowercase();
    lower.nfc().collect()
}

/// Whether the scrypt cost a secret key file asks for is small enough to run per fuzz input:
/// libsodium's parameter choice keeps N·p ≤ opslimit / 32, so opslimit ≤ 2^15 (its floor)
/// means at most 1,024 blocks of 1 KiB, a millisecond or two.
pub fn secret_key_is_cheap(text: &str) -> bool {
    let Some(line) = text.lines().nth(1) else {
        return true;
    };
    match B64.decode(line.trim()) {
        Ok(raw) if raw.len() == 158 && &raw[2..4] == b"Sc" => {
            let opslimit = u64::from_le_bytes(raw[38..46].try_into().unwrap());
            opslimit <= 1 << 15
        }
        _ => true,
    }
}
