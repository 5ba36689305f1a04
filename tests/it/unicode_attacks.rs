//! Unicode tricks in signed text and entry names, through the real binary: bidi overrides and
//! invisible characters never reach the terminal (`verify`, `read`, `index show`), and names
//! that are one file on a case-insensitive volume (`σ`/`ς`, `ſ`/`s`) never share a bundle.

use crate::{bundle_support, reader_support};

use std::fs;

use qasid::bundle::{self, BundleError, CreateOptions};
use qasid::limits::BundleLimits;
use qasid::manifest::ManifestError;
use reader_support::{code, key, publish, qasid, stderr};

/// Characters that reorder or hide text: overrides, an isolate, zero-width space, word joiner,
/// byte order mark, soft hyphen.
const HIDDEN: [char; 7] = [
    '\u{202E}', '\u{202D}', '\u{2066}', '\u{200B}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
];

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(HIDDEN),
        "{what} printed a hidden character: {text:?}"
    );
    assert!(!text.contains('\u{1b}'), "{what}: {text:?}");
}

#[test]
fn bidi_overrides_and_invisible_characters_in_signed_text_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // "Invoice" then U+202E: a terminal would show "exe.fdp" as "pdf.exe" reversed.
    let title = "Invoice\u{202E}fdp.exe\u{200B} \u{2066}news\u{2069} \u{FEFF}\u{00AD}";
    fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: {title}\nauthor: Desk\u{202D}x\u{2060}\ndate: 2026-02-14\nlanguage: fa\n---\n\n\
             # Body\u{202E}txt\n\nمی\u{200C}خواهم \u{200F}خبر\n"
        ),
    )
    .unwrap();
    let zip = dir.path().join("evil.zip");
    bundle::create(
        &src,
        &key(),
        &zip,
        &CreateOptions {
            name: Some("evil".into()),
            version: Some(1),
            limits: BundleLimits::default(),
        },
    )
    .unwrap();
    let publisher = key().public().to_base64();

    let out = qasid()
        .arg("verify")
        .arg(&zip)
        .args(["--publisher", &publisher])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_clean("verify", &shown);
    assert!(shown.contains("Invoicefdp.exe news"), "{shown}");

    let out = qasid()
        .arg("read")
        .arg(&zip)
        .args(["--publisher", &publisher])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_clean("read", &shown);
    assert!(shown.contains("Invoicefdp.exe"), "{shown}");
    // Spelling characters of Persian text stay: ZWNJ and RLM.
    assert!(shown.contains("می\u{200C}خواهم \u{200F}خبر"), "{shown}");

    let out_dir = dir.path().join("out");
    let out = qasid()
        .arg("read")
        .arg(&zip)
        .args(["--publisher", &publisher, "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_clean("read --out", &String::from_utf8(out.stdout).unwrap());

    let repo = dir.path().join("repo");
    publish(&repo, &key(), &[zip.as_path()]);
    for all in [false, true] {
        let out = qasid()
            .args(["index", "show", "--publisher", &publisher, "--repo"])
            .arg(&repo)
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(all.then_some("--all"))
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let shown = String::from_utf8(out.stdout).unwrap();
        assert_clean("index show", &shown);
        assert!(shown.contains("Invoicefdp.exe"), "{shown}");
    }
}

/// Files that are one file on APFS or NTFS (case-insensitive): lowercasing alone did not see
/// that `σ`/`ς` and `ſ`/`s` are the same name there.
const FOLDED_PAIRS: [(&str, &str); 3] = [
    ("\u{3c3}.txt", "\u{3c2}.txt"),
    ("\u{17f}.txt", "s.txt"),
    ("\u{212a}.txt", "k.txt"),
];

#[test]
fn names_equal_under_unicode_case_folding_are_refused_by_verify() {
    for (a, b) in FOLDED_PAIRS {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("article.md", bundle_support::ARTICLE.as_bytes()),
            (a, b"one"),
            (b, b"two"),
        ];
        files.sort_by(|x, y| x.0.cmp(y.0));
        let bytes = bundle_support::RawZip::new(bundle_support::raw_bundle(&files)).to_bytes();
        let err = bundle_support::reject_default(&bytes);
        assert!(
            matches!(err, BundleError::Manifest(ManifestError::Collision(..))),
            "{a} {b}: {err}"
        );
        // And through the binary: exit 3, the collision named.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("folded.zip");
        fs::write(&path, &bytes).unwrap();
        let out = qasid()
            .arg("verify")
            .arg(&path)
            .args(["--publisher", &bundle_support::key().public().to_base64()])
            .output()
            .unwrap();
        assert_eq!(code(&out), 3, "{a} {b}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("differ only by case or Unicode normalisation"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn names_equal_under_unicode_case_folding_are_refused_by_bundle_creation() {
    for (a, b) in FOLDED_PAIRS {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("article.md"), bundle_support::ARTICLE).unwrap();
        fs::write(src.join(a), b"one").unwrap();
        fs::write(src.join(b), b"two").unwrap();
        let key_file = dir.path().join("publisher.key");
        let out = qasid()
            .args(["keygen", "--unencrypted", "--out"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let out = qasid()
            .arg("bundle")
            .arg(&src)
            .arg("--key")
            .arg(&key_file)
            .arg("--out")
            .arg(dir.path().join("b.zip"))
            .output()
            .unwrap();
        assert_ne!(code(&out), 0, "{a} {b} bundled");
        assert!(
            stderr(&out).contains("differ only by case or Unicode normalisation"),
            "{a} {b}: {}",
            stderr(&out)
        );
        assert!(!dir.path().join("b.zip").exists());
    }
}
