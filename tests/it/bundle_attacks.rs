//! Hostile bundles the verifier must refuse, one test per attack, each on real zip bytes and each
//! checking that nothing was extracted (see `bundle_support::reject`).

use crate::bundle_support;

use bundle_support::*;
use qasid::bundle::{self, BundleError};
use qasid::limits::BundleLimits;
use qasid::manifest::{EntryNameError, ManifestError};
use qasid::ErrorClass;

/// A valid raw bundle of the minimal files, as entries to tamper with.
fn minimal() -> Vec<RawEntry> {
    raw_bundle(&minimal_files())
}

fn zip(entries: Vec<RawEntry>) -> Vec<u8> {
    RawZip::new(entries).to_bytes()
}

#[test]
fn the_raw_builder_makes_bundles_qasid_accepts() {
    // Guards every test below: each rejection is caused by its one change, nothing else.
    let bytes = zip(minimal());
    let verified = bundle::verify_reader(&bytes[..], key().public(), &BundleLimits::default())
        .expect("a well-formed raw bundle must verify");
    assert_eq!(verified.manifest().files().len(), 2);
}

// ---- tampered contents ----

#[test]
fn changed_byte_in_stored_file_fails_crc() {
    let built = build_sample();
    let mut bytes = built.bytes();
    let image = &sample_files()[1].1;
    let at = find(&bytes, image) + 100;
    bytes[at] ^= 1;
    let err = reject_default(&bytes);
    assert!(matches!(err, BundleError::CrcMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Verification);
}

#[test]
fn changed_stored_file_with_fixed_crc_fails_sha256() {
    let built = build_sample();
    let mut entries = entries_of(&built.bytes());
    let image = entries
        .iter_mut()
        .find(|e| e.name == b"files/images/map.png")
        .unwrap();
    let mut content = image.data.clone();
    content[100] ^= 1;
    image.set_content(&content);
    let err = reject_default(&zip(entries));
    assert!(
        matches!(&err, BundleError::HashMismatch { path, .. } if path.as_str() == "images/map.png"),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("images/map.png: sha256 mismatch (manifest says "));
}

#[test]
fn changed_deflated_file_fails_sha256() {
    let built = build_sample();
    let mut entries = entries_of(&built.bytes());
    let article = entries
        .iter_mut()
        .find(|e| e.name == b"files/article.md")
        .unwrap();
    assert_eq!(article.method, METHOD_DEFLATE);
    article.set_content(ARTICLE.replace("still", "never").as_bytes());
    let err = reject_default(&zip(entries));
    assert!(
        matches!(&err, BundleError::HashMismatch { path, .. } if path.as_str() == "article.md"),
        "{err}"
    );
}

#[test]
fn changed_byte_in_deflate_stream_is_refused() {
    let built = build_sample();
    let mut entries = entries_of(&built.bytes());
    let css = entries
        .iter_mut()
        .find(|e| e.name == b"files/style.css")
        .unwrap();
    css.data[3] ^= 0x55;
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::CorruptDeflate { .. }
                | BundleError::CrcMismatch { .. }
                | BundleError::SizeLie { .. }
        ),
        "{err}"
    );
}

#[test]
fn changed_manifest_field_breaks_signature() {
    let built = build_sample();
    let mut entries = entries_of(&built.bytes());
    let manifest = String::from_utf8(content_of(&entries, "manifest.json")).unwrap();
    let forged = manifest.replace("Qasid Desk", "Ministry Desk");
    assert_ne!(forged, manifest);
    entries[0] = RawEntry::stored("manifest.json", forged.as_bytes());
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::BadSignature(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("signature does not match publisher {}", key().public().id())
    );
}

#[test]
fn bad_signature_is_refused() {
    let mut entries = minimal();
    let mut signature = entries[1].data.clone();
    signature[10] ^= 0x80;
    entries[1] = RawEntry::stored("manifest.sig", &signature);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::BadSignature(_)
    ));
}

#[test]
fn missing_signature_entry_is_refused() {
    let mut entries = minimal();
    entries.remove(1);
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::MissingSignature { .. }), "{err}");
}

#[test]
fn short_signature_is_refused() {
    let mut entries = minimal();
    let signature = entries[1].data[..63].to_vec();
    entries[1] = RawEntry::stored("manifest.sig", &signature);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::SignatureLength(63)
    ));
}

#[test]
fn signature_first_is_refused() {
    let mut entries = minimal();
    entries.swap(0, 1);
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::MissingManifest { .. }), "{err}");
}

#[test]
fn different_publisher_key_is_refused() {
    let bytes = build_sample().bytes();
    let err = reject(&bytes, other_key().public(), &BundleLimits::default());
    assert!(matches!(err, BundleError::BadSignature(id) if id == other_key().public().id()));
}

#[test]
fn manifest_naming_another_publisher_is_refused() {
    // Signed by the expected key, but claiming to be someone else's bundle.
    let files = minimal_files();
    let manifest = manifest_json(other_key().public(), &files);
    let mut entries = signed_metadata(&key(), &manifest);
    entries.extend(files.iter().map(|(p, c)| file_entry(p, c)));
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::UnexpectedPublisher { .. })
        ),
        "{err}"
    );
}

#[test]
fn compressed_manifest_is_refused() {
    let mut entries = minimal();
    let manifest = content_of(&entries, "manifest.json");
    entries[0] = RawEntry::deflated("manifest.json", &manifest);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::MetadataCompressed { .. }
    ));
}

#[test]
fn oversized_manifest_is_refused_before_reading_it() {
    let limits = BundleLimits {
        max_manifest_bytes: 100,
        ..BundleLimits::default()
    };
    let err = reject(&zip(minimal()), key().public(), &limits);
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::TooLarge { limit: 100, .. })
        ),
        "{err}"
    );
}

// ---- files and entries that do not match the manifest ----

#[test]
fn file_missing_from_zip_is_refused() {
    let mut entries = minimal();
    entries.pop();
    let err = reject_default(&zip(entries));
    assert!(
        matches!(&err, BundleError::MissingFromBundle(p) if p.as_str() == "images/a.png"),
        "{err}"
    );
    assert_eq!(err.to_string(), "images/a.png: missing from bundle");
}

#[test]
fn extra_file_not_in_manifest_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("files/images/b.png", b"smuggled"));
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::NotInManifest { .. }), "{err}");
    assert_eq!(err.to_string(), "entry files/images/b.png: not in manifest");
}

#[test]
fn entry_outside_files_folder_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("autorun.inf", b"smuggled"));
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::UnexpectedEntry { .. }
    ));
}

#[test]
fn duplicate_entry_names_are_refused() {
    let mut entries = minimal();
    let again = entries[2].clone();
    entries.insert(3, again);
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::DuplicateEntry { .. }), "{err}");
}

#[test]
fn duplicate_manifest_entry_is_refused() {
    let mut entries = minimal();
    let again = entries[0].clone();
    entries.push(again);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::DuplicateEntry { .. }
    ));
}

#[test]
fn files_out_of_manifest_order_are_refused() {
    let mut entries = minimal();
    entries.swap(2, 3);
    let err = reject_default(&zip(entries));
    assert!(
        matches!(&err, BundleError::MissingFromBundle(p) if p.as_str() == "article.md"),
        "{err}"
    );
}

#[test]
fn names_differing_only_by_case_are_refused() {
    let files: Vec<(&str, &[u8])> = vec![
        ("article.md", ARTICLE.as_bytes()),
        ("images/A.png", b"one"),
        ("images/a.png", b"two"),
    ];
    let err = reject_default(&zip(raw_bundle(&files)));
    assert!(
        matches!(err, BundleError::Manifest(ManifestError::Collision(..))),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "manifest.json: images/A.png and images/a.png differ only by case or Unicode normalisation"
    );
}

#[test]
fn names_differing_only_by_unicode_normalisation_are_refused() {
    let nfd = "images/cafe\u{301}.png";
    let nfc = "images/caf\u{e9}.png";
    let mut files: Vec<(&str, &[u8])> = vec![
        ("article.md", ARTICLE.as_bytes()),
        (nfd, b"decomposed"),
        (nfc, b"composed"),
    ];
    files.sort_by(|a, b| a.0.cmp(b.0));
    let err = reject_default(&zip(raw_bundle(&files)));
    assert!(
        matches!(err, BundleError::Manifest(ManifestError::Collision(..))),
        "{err}"
    );
}

#[test]
fn dotdot_entry_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("files/../../etc/passwd", b"root::0:0"));
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::UnsafeEntryName {
                reason: EntryNameError::Escapes,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "entry files/../../etc/passwd: path escapes bundle"
    );
}

#[test]
fn dotdot_entry_outside_files_folder_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("../../etc/passwd", b"root::0:0"));
    let err = reject_default(&zip(entries));
    assert_eq!(
        err.to_string(),
        "entry ../../etc/passwd: path escapes bundle"
    );
}

#[test]
fn dotdot_path_in_signed_manifest_is_refused() {
    let files: Vec<(&str, &[u8])> = vec![
        ("../evil.sh", b"#!/bin/sh"),
        ("article.md", ARTICLE.as_bytes()),
    ];
    let err = reject_default(&zip(raw_bundle(&files)));
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::BadPath {
                reason: EntryNameError::Escapes,
                ..
            })
        ),
        "{err}"
    );
}

#[test]
fn absolute_path_entry_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("/etc/passwd", b"root::0:0"));
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::UnsafeEntryName {
                reason: EntryNameError::Absolute,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn absolute_path_inside_files_folder_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("files//etc/passwd", b"root::0:0"));
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::UnsafeEntryName {
                reason: EntryNameError::Absolute,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn backslash_path_entry_is_refused() {
    let mut entries = minimal();
    entries.push(RawEntry::stored("files/..\\..\\evil.exe", b"MZ"));
    let err = reject_default(&zip(entries));
    assert!(
        matches!(
            err,
            BundleError::UnsafeEntryName {
                reason: EntryNameError::Backslash,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn non_utf8_entry_name_is_refused() {
    let mut entries = minimal();
    let mut entry = RawEntry::stored("files/x", b"x");
    entry.name = b"files/\xff\xfe.png".to_vec();
    entry.flags = 1 << 11;
    entries.push(entry);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::NameNotUtf8 { .. }
    ));
}

#[test]
fn non_ascii_name_without_utf8_flag_is_refused() {
    // Other unzip tools would read this name as CP437 and write a different file name.
    let files: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes()), ("تصویر.png", b"img")];
    let mut entries = raw_bundle(&files);
    entries[3].flags = 0;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::NameNotMarkedUtf8 { .. }
    ));
}

#[test]
fn symlink_entry_is_refused() {
    let mut entries = minimal();
    entries[3].external_attributes = 0o120777 << 16;
    let err = reject_default(&zip(entries));
    assert!(matches!(err, BundleError::Symlink { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "entry files/images/a.png: symlink entries are not allowed"
    );
}

#[test]
fn device_entry_is_refused() {
    let mut entries = minimal();
    entries[3].external_attributes = 0o020644 << 16;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::SpecialFile { .. }
    ));
}

#[test]
fn directory_entry_is_refused() {
    let mut entries = minimal();
    let mut dir = RawEntry::stored("files/images/", b"");
    dir.external_attributes = (0o040755 << 16) | 0x10;
    entries.insert(3, dir);
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Directory { .. }
    ));
}

#[test]
fn directory_attributes_on_a_file_name_are_refused() {
    let mut entries = minimal();
    entries[3].external_attributes = 0o040755 << 16;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Directory { .. }
    ));
}

#[test]
fn executable_permissions_are_refused() {
    let mut entries = minimal();
    entries[3].external_attributes = 0o100755 << 16;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Attributes { .. }
    ));
}

#[test]
fn all_zero_attributes_are_accepted() {
    let mut entries = minimal();
    entries[3].external_attributes = 0;
    entries[3].version_made_by = 20;
    bundle::verify_reader(&zip(entries)[..], key().public(), &BundleLimits::default()).unwrap();
}

// ---- zip bombs and limits ----

#[test]
fn bomb_with_lying_declared_size_stops_at_the_declared_size() {
    // The manifest and header say 100 bytes; the deflate stream would produce 10 MB.
    let real = vec![b'a'; 10_000_000];
    let claimed = &real[..100];
    let files: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes()), ("bomb.txt", claimed)];
    let mut entries = raw_bundle(&files);
    let mut bomb = RawEntry::deflated("files/bomb.txt", &real);
    bomb.size = 100;
    bomb.crc32 = crc32(claimed);
    entries[3] = bomb;
    let err = reject_default(&zip(entries));
    assert!(
        matches!(err, BundleError::SizeLie { declared: 100, .. }),
        "{err}"
    );
}

#[test]
fn deflate_stream_shorter_than_declared_size_is_refused() {
    let files: Vec<(&str, &[u8])> = vec![
        ("article.md", ARTICLE.as_bytes()),
        ("short.txt", &[b'z'; 500]),
    ];
    let mut entries = raw_bundle(&files);
    let shorter = RawEntry::deflated("files/short.txt", &[b'z'; 400]);
    entries[3].data = shorter.data.clone();
    entries[3].compressed_size = shorter.compressed_size;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::SizeLie { declared: 500, .. }
    ));
}

#[test]
fn bomb_past_ratio_limit_is_refused_at_its_header() {
    let zeros = vec![0u8; 20_000_000];
    let files: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes()), ("zeros.txt", &zeros)];
    let bytes = zip(raw_bundle(&files));
    let err = reject_default(&bytes);
    assert!(
        matches!(err, BundleError::CompressionRatio { limit: 100, ratio, .. } if ratio > 100),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("entry files/zeros.txt: compression ratio "));
}

#[test]
fn bomb_past_total_limit_is_refused_before_any_file_is_read() {
    let limits = BundleLimits {
        max_total_bytes: 1000,
        ..BundleLimits::default()
    };
    let big = vec![7u8; 2000];
    let files: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes()), ("big.bin", &big)];
    let err = reject(&zip(raw_bundle(&files)), key().public(), &limits);
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::TotalTooLarge { limit: 1000, .. })
        ),
        "{err}"
    );
}

#[test]
fn file_past_size_limit_is_refused() {
    let limits = BundleLimits {
        max_file_bytes: 1000,
        ..BundleLimits::default()
    };
    let big = vec![7u8; 2000];
    let files: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes()), ("big.bin", &big)];
    let err = reject(&zip(raw_bundle(&files)), key().public(), &limits);
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::FileTooLarge { .. })
        ),
        "{err}"
    );
}

#[test]
fn header_size_disagreeing_with_manifest_is_refused() {
    let files = minimal_files();
    let manifest = manifest_json_with(key().public(), &files, |path, size| {
        if path == "images/a.png" {
            size + 1
        } else {
            size
        }
    });
    let mut entries = signed_metadata(&key(), &manifest);
    entries.extend(files.iter().map(|(p, c)| file_entry(p, c)));
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::SizeMismatch { .. }
    ));
}

#[test]
fn too_many_entries_are_refused() {
    let limits = BundleLimits {
        max_entries: 2,
        ..BundleLimits::default()
    };
    let files: Vec<(&str, &[u8])> = vec![
        ("a.png", b"1"),
        ("article.md", ARTICLE.as_bytes()),
        ("b.png", b"2"),
    ];
    let err = reject(&zip(raw_bundle(&files)), key().public(), &limits);
    assert!(
        matches!(
            err,
            BundleError::Manifest(ManifestError::TooManyFiles { count: 3, limit: 2 })
        ),
        "{err}"
    );
}

#[test]
fn bundle_past_size_limit_stops_reading() {
    let limits = BundleLimits {
        max_bundle_bytes: 1000,
        ..BundleLimits::default()
    };
    let err = reject(&build_sample().bytes(), key().public(), &limits);
    assert!(
        matches!(err, BundleError::TooLarge { limit: 1000 }),
        "{err}"
    );
}

// ---- container structure ----

#[test]
fn truncated_file_is_refused_at_every_cut_point() {
    let bytes = build_sample().bytes();
    let central = rfind(&bytes, b"PK\x01\x02");
    let end = rfind(&bytes, b"PK\x05\x06");
    let cuts = [
        2,
        4,
        20,
        40,
        100,
        find(&bytes, b"PK\x03\x04\x0a\x00\x00\x00\x00\x00") + 1,
        bytes.len() / 2,
        central,
        central + 10,
        end,
        end + 10,
        bytes.len() - 1,
    ];
    for cut in cuts {
        let err = reject_default(&bytes[..cut]);
        assert!(
            matches!(err, BundleError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn truncated_inside_deflated_entry_is_refused() {
    let built = build_sample();
    let bytes = built.bytes();
    let css_header = find(&bytes, b"files/style.css");
    let err = reject_default(&bytes[..css_header + 20]);
    assert!(matches!(err, BundleError::Truncated { .. }), "{err}");
}

#[test]
fn garbage_file_is_refused() {
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 79) as u8).collect();
    assert!(matches!(reject_default(&garbage), BundleError::NotAZip));
}

#[test]
fn empty_file_is_refused() {
    assert!(matches!(reject_default(b""), BundleError::Empty));
}

#[test]
fn empty_zip_is_refused() {
    assert!(matches!(
        reject_default(&zip(Vec::new())),
        BundleError::MissingManifest { .. }
    ));
}

#[test]
fn prepended_payload_is_refused() {
    let mut raw = RawZip::new(minimal());
    raw.prefix = b"MZ\x90\x00 a self-extractor stub".to_vec();
    let err = reject_default(&raw.to_bytes());
    assert!(
        matches!(err, BundleError::DataBeforeFirstEntry(26)),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "bundle: data hidden before the first entry (26 bytes)"
    );
}

#[test]
fn data_between_entries_is_refused() {
    let mut raw = RawZip::new(minimal());
    raw.gap = Some((2, b"hidden payload".to_vec()));
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::DataBetweenEntries(_)
    ));
}

#[test]
fn data_between_entries_and_central_directory_is_refused() {
    let mut raw = RawZip::new(minimal());
    raw.gap = Some((3, b"hidden payload".to_vec()));
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::DataBetweenEntries(_)
    ));
}

#[test]
fn trailing_junk_is_refused() {
    let mut raw = RawZip::new(minimal());
    raw.trailing = b"twelve bytes".to_vec();
    let err = reject_default(&raw.to_bytes());
    assert!(matches!(err, BundleError::TrailingData(12)), "{err}");
    assert_eq!(
        err.to_string(),
        "bundle: 12 bytes of trailing data after the end of the zip"
    );
}

#[test]
fn end_record_comment_is_refused() {
    let mut raw = RawZip::new(minimal());
    raw.comment = b"hello".to_vec();
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::Comment
    ));
}

#[test]
fn extra_field_is_refused() {
    let mut entries = minimal();
    // An extended-timestamp field, as many zip tools add.
    entries[3].extra = vec![0x55, 0x54, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::ExtraField { .. }
    ));
}

#[test]
fn data_descriptor_flag_is_refused() {
    let mut entries = minimal();
    entries[3].flags |= 1 << 3;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::DataDescriptor { .. }
    ));
}

#[test]
fn encrypted_entry_is_refused() {
    let mut entries = minimal();
    entries[3].flags |= 1;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Encrypted { .. }
    ));
}

#[test]
fn unknown_flag_bits_are_refused() {
    let mut entries = minimal();
    entries[3].flags |= 1 << 1;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Flags { flags: 2, .. }
    ));
}

#[test]
fn zip64_size_marker_is_refused() {
    let mut entries = minimal();
    entries[3].size = u32::MAX;
    entries[3].compressed_size = u32::MAX;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Zip64Entry { .. }
    ));
}

#[test]
fn newer_zip_version_is_refused() {
    let mut entries = minimal();
    entries[3].version_needed = 45;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Version { version: 45, .. }
    ));
}

#[test]
fn other_compression_method_is_refused() {
    let mut entries = minimal();
    entries[3].method = 12; // bzip2
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Method { method: 12, .. }
    ));
}

#[test]
fn stored_entry_with_differing_sizes_is_refused() {
    let mut entries = minimal();
    entries[3].compressed_size += 1;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::StoredSizeMismatch { .. }
    ));
}

#[test]
fn other_timestamp_is_refused() {
    let mut entries = minimal();
    entries[3].date = 0x5a21;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::Timestamp { .. }
    ));
}

#[test]
fn wrong_crc_is_refused() {
    let mut entries = minimal();
    entries[3].crc32 ^= 1;
    assert!(matches!(
        reject_default(&zip(entries)),
        BundleError::CrcMismatch { .. }
    ));
}

#[test]
fn central_record_disagreeing_with_local_header_is_refused() {
    let entries = minimal();
    let mut central = entries.clone();
    central[3].crc32 ^= 1;
    let mut raw = RawZip::new(entries);
    raw.central = Some(central);
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::CentralMismatch { field: "crc32", .. }
    ));
}

#[test]
fn central_record_with_another_name_is_refused() {
    // The classic confusion: the central directory shows one name, the local header another.
    let entries = minimal();
    let mut central = entries.clone();
    central[3].name = b"files/images/b.png".to_vec();
    let mut raw = RawZip::new(entries);
    raw.central = Some(central);
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::CentralMismatch { field: "name", .. }
    ));
}

#[test]
fn central_directory_missing_a_record_is_refused() {
    let entries = minimal();
    let mut central = entries.clone();
    central.pop();
    let mut raw = RawZip::new(entries);
    raw.central = Some(central);
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::CentralCount(4)
    ));
}

#[test]
fn central_directory_with_an_extra_record_is_refused() {
    let entries = minimal();
    let mut central = entries.clone();
    central.push(RawEntry::stored("files/ghost.png", b"boo"));
    let mut raw = RawZip::new(entries);
    raw.central = Some(central);
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::CentralCount(4)
    ));
}

#[test]
fn central_record_comment_is_refused() {
    let entries = minimal();
    let mut central = entries.clone();
    central[2].comment = b"note".to_vec();
    let mut raw = RawZip::new(entries);
    raw.central = Some(central);
    assert!(matches!(
        reject_default(&raw.to_bytes()),
        BundleError::EntryComment { .. }
    ));
}

#[test]
fn hostile_names_are_escaped_in_messages() {
    let mut entries = minimal();
    entries.push(RawEntry::stored(
        "files/\u{1b}[2Jcleared\u{202e}gnp.exe",
        b"x",
    ));
    let message = reject_default(&zip(entries)).to_string();
    assert!(
        !message.contains('\u{1b}') && !message.contains('\u{202e}'),
        "{message}"
    );
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

fn rfind(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("needle present")
}

// ---- signed but malformed manifests ----

/// A bundle of the minimal files whose manifest is `edit`ed and then properly signed.
fn with_signed_manifest(edit: impl Fn(String) -> String) -> Vec<u8> {
    let files = minimal_files();
    let manifest = String::from_utf8(manifest_json(key().public(), &files)).unwrap();
    let edited = edit(manifest.clone());
    assert_ne!(edited, manifest);
    let mut entries = signed_metadata(&key(), edited.as_bytes());
    entries.extend(files.iter().map(|(p, c)| file_entry(p, c)));
    zip(entries)
}

#[test]
fn non_canonical_manifest_is_refused() {
    // Same JSON value, other bytes: one manifest must have exactly one encoding.
    let bytes = with_signed_manifest(|m| m.replace("\n  ", "\n    "));
    assert!(matches!(
        reject_default(&bytes),
        BundleError::Manifest(ManifestError::NotCanonical)
    ));
}

#[test]
fn duplicate_json_key_in_manifest_is_refused() {
    // Parsers disagree on which duplicate wins; qasid refuses the question.
    let bytes = with_signed_manifest(|m| m.replacen("{\n", "{\n  \"title\": \"Other\",\n", 1));
    assert!(matches!(
        reject_default(&bytes),
        BundleError::Manifest(ManifestError::Json(_))
    ));
}

#[test]
fn unknown_manifest_field_is_refused() {
    let bytes = with_signed_manifest(|m| m.replacen("{\n", "{\n  \"redirect\": \"x\",\n", 1));
    assert!(matches!(
        reject_default(&bytes),
        BundleError::Manifest(ManifestError::Json(_))
    ));
}

// ---- read_article's own limits ----

#[test]
fn oversized_article_is_refused_by_read_article() {
    let article = vec![b'a'; (qasid::limits::MAX_RENDERED_ARTICLE_BYTES + 1) as usize];
    let files: Vec<(&str, &[u8])> = vec![("article.md", &article)];
    let mut entries = raw_bundle(&files);
    // Stored: deflating it would (rightly) trip the compression ratio limit first.
    entries[2] = RawEntry::stored("files/article.md", &article);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    std::fs::write(&path, zip(entries)).unwrap();
    let limits = BundleLimits::default();
    bundle::verify_file(&path, key().public(), &limits).unwrap();
    let err = bundle::read_article(&path, key().public(), &limits).unwrap_err();
    assert!(matches!(err, BundleError::ArticleTooLarge { .. }), "{err}");
}

#[test]
fn non_utf8_article_is_refused_by_read_article() {
    let files: Vec<(&str, &[u8])> = vec![("article.md", b"---\ntitle: \xff\n")];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.zip");
    std::fs::write(&path, zip(raw_bundle(&files))).unwrap();
    let err = bundle::read_article(&path, key().public(), &BundleLimits::default()).unwrap_err();
    assert!(matches!(err, BundleError::ArticleNotUtf8), "{err}");
}
