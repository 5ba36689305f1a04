//! Bundle zip verification (`bundle::verify_reader`), the strict sequential zip reader behind
//! `qasid verify`, sync, the reader and the push endpoint.
//!
//! Each input is verified as it is and after `fixup_bundle` (manifest hashes, crc32s and the
//! manifest signature made to match), with the default limits and with tiny ones.
//! Invariants: an error is always a verification error (never I/O, never a panic) and its
//! message is printable; an accepted bundle satisfies `check_accepted_bundle` (canonical
//! manifest, valid collision-free paths, same entries and contents as the `zip` crate reads),
//! extracts to exactly its manifest files, and anything accepted under tiny limits is accepted
//! under the defaults too.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use qasid::bundle::{self, VerifiedBundle};
use qasid::limits::BundleLimits;
use qasid::ErrorClass;
use qasid_fuzz::{assert_printable, check_accepted_bundle, fixup_bundle, public_key};

fn tiny() -> BundleLimits {
    BundleLimits {
        max_bundle_bytes: 8192,
        max_file_bytes: 4096,
        max_total_bytes: 6144,
        max_entries: 3,
        max_manifest_bytes: 2048,
        max_compression_ratio: 10,
        max_path_bytes: 40,
        max_path_depth: 3,
    }
}

fuzz_target!(|data: &[u8]| {
    let defaults = BundleLimits::default();
    check(data, &defaults);
    let fixed = fixup_bundle(data);
    if fixed != data {
        check(&fixed, &defaults);
    }
    if check(&fixed, &tiny()) {
        assert!(
            bundle::verify_reader(&fixed[..], public_key(), &defaults).is_ok(),
            "accepted under tiny limits but refused under the defaults"
        );
    }
});

/// Verifies `bytes` and checks the outcome; true if accepted.
fn check(bytes: &[u8], limits: &BundleLimits) -> bool {
    match bundle::verify_reader(bytes, public_key(), limits) {
        Ok(verified) => {
            check_accepted_bundle(bytes, &verified, limits);
            check_extraction(bytes, &verified, limits);
            true
        }
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::Verification, "{e:?}");
            assert_printable("bundle error", &e.to_string());
            false
        }
    }
}

/// Extracting an accepted bundle writes exactly its manifest files, with their contents, and
/// nothing else; `read_article` returns `article.md`.
fn check_extraction(bytes: &[u8], verified: &VerifiedBundle, limits: &BundleLimits) {
    let dir = tempfile::tempdir().expect("temp dir");
    let zip = dir.path().join("b.zip");
    std::fs::write(&zip, bytes).expect("write bundle");
    let out = dir.path().join("out");
    let again = bundle::extract_verified(&zip, public_key(), limits, &out)
        .expect("an accepted bundle extracts");
    assert_eq!(again.manifest(), verified.manifest());
    let mut found = Vec::new();
    walk(&out, &out, &mut found);
    found.sort();
    let mut listed: Vec<String> = verified
        .manifest()
        .files()
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    listed.sort();
    assert_eq!(found, listed, "extracted files differ from the manifest");
    for file in verified.manifest().files() {
        let content = std::fs::read(out.join(file.path().as_str())).expect("extracted file");
        assert_eq!(
            qasid::content_id::ContentId::of_bytes(&content),
            file.sha256()
        );
        if file.path().as_str() == "article.md" {
            match bundle::read_article(&zip, public_key(), limits) {
                Ok((_, text)) => assert_eq!(text.as_bytes(), &content[..]),
                Err(e) => assert!(
                    std::str::from_utf8(&content).is_err(),
                    "read_article refused a UTF-8 article: {e}"
                ),
            }
        }
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read extracted dir") {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(!kind.is_symlink(), "extraction made a symlink");
        if kind.is_dir() {
            walk(root, &entry.path(), found);
        } else {
            let rel = entry.path().strip_prefix(root).unwrap().to_owned();
            found.push(rel.to_str().unwrap().to_owned());
        }
    }
}
