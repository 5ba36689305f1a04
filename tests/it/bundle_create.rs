//! Creating bundles: round trips, determinism, the exact zip bytes, and refusals of source
//! folders that a bundle cannot represent faithfully.

use crate::bundle_support;

use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use bundle_support::*;
use qasid::bundle::{self, BundleError, CreateOptions};
use qasid::content_id::ContentId;
use qasid::limits::BundleLimits;
use qasid::manifest::{EntryNameError, ManifestError};
use qasid::ErrorClass;

fn create(src: &Path, out: &Path) -> Result<bundle::CreatedBundle, BundleError> {
    bundle::create(src, &key(), out, &CreateOptions::default())
}

#[test]
fn round_trip_create_verify_extract_read() {
    let built = build_sample();
    let created = &built.created;
    let limits = BundleLimits::default();
    let bytes = built.bytes();
    assert_eq!(created.size(), bytes.len() as u64);
    assert_eq!(created.sha256(), ContentId::of_bytes(&bytes));
    assert_eq!(created.manifest().name(), "mirror-news");
    assert_eq!(created.manifest().version(), 1);
    assert_eq!(created.manifest().title(), "Mirrors keep the news alive");
    assert_eq!(created.manifest().created(), "2026-03-01");
    assert_eq!(&created.manifest().publisher_key(), key().public());
    assert!(created.minisig_path().ends_with("mirror-news.zip.minisig"));
    let minisig = fs::read_to_string(created.minisig_path()).unwrap();
    assert!(
        minisig.contains(&format!(
            "trusted comment: qasid bundle name=mirror-news version=1 sha256={}",
            created.sha256()
        )),
        "{minisig}"
    );

    let verified = bundle::verify_file(created.path(), key().public(), &limits).unwrap();
    assert_eq!(verified.manifest(), created.manifest());
    assert_eq!(verified.publisher(), key().public());
    let manifest_bytes = content_of(&entries_of(&bytes), "manifest.json");
    assert_eq!(verified.manifest_id(), ContentId::of_bytes(&manifest_bytes));
    assert_eq!(manifest_bytes, created.manifest().to_bytes());

    let out = built.dir.path().join("extracted");
    bundle::extract_verified(created.path(), key().public(), &limits, &out).unwrap();
    for (path, contents) in sample_files() {
        assert_eq!(fs::read(out.join(path)).unwrap(), contents, "{path}");
    }

    let (_, article) = bundle::read_article(created.path(), key().public(), &limits).unwrap();
    assert_eq!(article, ARTICLE);
}

#[test]
fn extraction_into_an_existing_empty_folder_works_and_a_full_one_is_refused() {
    let built = build_sample();
    let limits = BundleLimits::default();
    let empty = built.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    bundle::extract_verified(built.created.path(), key().public(), &limits, &empty).unwrap();
    assert!(empty.join("article.md").is_file());
    let err = bundle::extract_verified(built.created.path(), key().public(), &limits, &empty)
        .unwrap_err();
    assert!(matches!(err, BundleError::OutputNotEmpty(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Usage);
}

#[test]
fn same_folder_and_key_give_identical_bytes_across_runs_and_folders() {
    let files = sample_files();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let a = article_folder(first.path(), "same-article", &files);
    let b = article_folder(second.path(), "same-article", &files);
    // Different permissions and modification times on the second copy.
    for (path, _) in &files {
        let file = b.join(path);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    fs::set_permissions(b.join("images"), fs::Permissions::from_mode(0o700)).unwrap();

    let one = create(&a, &first.path().join("one.zip")).unwrap();
    let again = create(&a, &first.path().join("again.zip")).unwrap();
    let two = create(&b, &second.path().join("two.zip")).unwrap();
    let bytes = fs::read(one.path()).unwrap();
    assert_eq!(bytes, fs::read(again.path()).unwrap());
    assert_eq!(bytes, fs::read(two.path()).unwrap());
    assert_eq!(one.sha256(), two.sha256());
    assert_eq!(
        fs::read(one.minisig_path()).unwrap(),
        fs::read(two.minisig_path()).unwrap()
    );
}

#[test]
fn zip_bytes_have_the_documented_layout() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = sample_files();
    files.push(("تصاویر/نقشه.png", b"not a png".to_vec()));
    let src = article_folder(dir.path(), "layout", &files);
    let created = create(&src, &dir.path().join("layout.zip")).unwrap();
    let bytes = fs::read(created.path()).unwrap();
    let le16 = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());

    let mut names = Vec::new();
    let mut at = 0;
    while le32(at) == 0x0403_4b50 {
        let (version, flags, method) = (le16(at + 4), le16(at + 6), le16(at + 8));
        let (time, date) = (le16(at + 10), le16(at + 12));
        let compressed = le32(at + 18) as usize;
        let name_len = le16(at + 26) as usize;
        let extra_len = le16(at + 28);
        let name = String::from_utf8(bytes[at + 30..at + 30 + name_len].to_vec()).unwrap();
        let deflated = name.starts_with("files/") && is_text_like(&name);
        assert_eq!(method, if deflated { 8 } else { 0 }, "{name}");
        assert_eq!(version, if deflated { 20 } else { 10 }, "{name}");
        assert_eq!(flags, if name.is_ascii() { 0 } else { 0x0800 }, "{name}");
        assert_eq!((time, date), (0, 0x0021), "{name}");
        assert_eq!(extra_len, 0, "{name}");
        names.push(name);
        at += 30 + name_len + compressed;
    }
    let mut expected = vec!["manifest.json".to_owned(), "manifest.sig".to_owned()];
    let mut paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    paths.sort();
    expected.extend(paths.iter().map(|p| format!("files/{p}")));
    assert_eq!(names, expected);

    let central_start = at;
    for name in &expected {
        assert_eq!(le32(at), 0x0201_4b50);
        let made_by = le16(at + 4);
        let deflated = name.starts_with("files/") && is_text_like(name);
        assert_eq!(made_by, if deflated { 0x0314 } else { 0x030a }, "{name}");
        assert_eq!(le16(at + 30), 0, "extra length of {name}");
        assert_eq!(le16(at + 32), 0, "comment length of {name}");
        assert_eq!(le16(at + 36), 0, "internal attributes of {name}");
        assert_eq!(le32(at + 38), 0x81a4_0000, "external attributes of {name}");
        at += 46 + le16(at + 28) as usize;
    }
    assert_eq!(le32(at), 0x0605_4b50);
    assert_eq!(le16(at + 8) as usize, expected.len());
    assert_eq!(le32(at + 16) as usize, central_start);
    assert_eq!(le16(at + 20), 0, "zip comment length");
    assert_eq!(at + 22, bytes.len());
    assert_eq!(
        content_of(&entries_of(&bytes), "manifest.sig").len(),
        64,
        "raw ed25519 signature"
    );
}

#[test]
fn dotfiles_are_included_like_any_other_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = sample_files();
    files.push((".well-known/notes.txt", b"kept".to_vec()));
    let src = article_folder(dir.path(), "dotfiles", &files);
    let created = create(&src, &dir.path().join("dotfiles.zip")).unwrap();
    assert!(created
        .manifest()
        .files()
        .iter()
        .any(|f| f.path().as_str() == ".well-known/notes.txt"));
}

#[test]
fn name_and_version_options() {
    let dir = tempfile::tempdir().unwrap();
    let src = article_folder(dir.path(), "My Article", &sample_files());
    let out = dir.path().join("b.zip");
    let err = create(&src, &out).unwrap_err();
    assert!(
        matches!(&err, BundleError::NameNeeded(name) if name == "My Article"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Usage);

    let opts = |name: &str, version| CreateOptions {
        name: Some(name.to_owned()),
        version,
        ..CreateOptions::default()
    };
    let err = bundle::create(&src, &key(), &out, &opts("Bad_Name", None)).unwrap_err();
    assert!(matches!(err, BundleError::BadName(_)), "{err}");
    let err = bundle::create(&src, &key(), &out, &opts("my-article", Some(0))).unwrap_err();
    assert!(matches!(err, BundleError::BadVersion), "{err}");
    let created = bundle::create(&src, &key(), &out, &opts("my-article", Some(7))).unwrap();
    assert_eq!(
        (created.manifest().name(), created.manifest().version()),
        ("my-article", 7)
    );
}

/// Asserts that creating a bundle of `src` fails with an error whose message names `named`.
fn refuse(src: &Path, named: &str) -> BundleError {
    let out = src.parent().unwrap().join("refused.zip");
    let err = create(src, &out).unwrap_err();
    assert!(
        err.to_string().contains(named),
        "{err} does not name {named}"
    );
    assert!(!out.exists());
    err
}

fn sample_in(dir: &Path) -> std::path::PathBuf {
    article_folder(dir, "article", &sample_files())
}

#[test]
fn symlink_in_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    std::os::unix::fs::symlink("/etc/passwd", src.join("images/passwd.png")).unwrap();
    let err = refuse(&src, "images/passwd.png");
    assert!(matches!(err, BundleError::SourceSymlink(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Usage);
}

#[test]
fn symlinked_folder_in_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    std::os::unix::fs::symlink("/etc", src.join("etc")).unwrap();
    assert!(matches!(refuse(&src, "etc"), BundleError::SourceSymlink(_)));
}

#[test]
fn fifo_in_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let fifo = src.join("pipe.bin");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(matches!(
        refuse(&src, "pipe.bin"),
        BundleError::SourceNotRegular(_)
    ));
}

#[test]
fn non_utf8_name_in_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    fs::write(src.join(name), b"latin-1 name").unwrap();
    assert!(matches!(
        refuse(&src, "caf\u{fffd}.png"),
        BundleError::SourceNameNotUtf8(_)
    ));
}

#[test]
fn unsafe_names_in_source_are_refused() {
    let cases: &[(&str, EntryNameError)] = &[
        ("..\\..\\evil.png", EntryNameError::Backslash),
        ("c:evil.png", EntryNameError::Colon),
        ("bell\u{7}.png", EntryNameError::ControlCharacter),
        ("photo\u{202e}gnp.exe", EntryNameError::BidiControl),
        (
            "aux.txt",
            EntryNameError::WindowsDeviceName("aux.txt".into()),
        ),
        ("trailing.", EntryNameError::TrailingDotOrSpace),
    ];
    for (name, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let src = sample_in(dir.path());
        fs::write(src.join(name), b"x").unwrap();
        // Messages escape control and bidirectional characters in file names.
        let shown: String = name
            .chars()
            .map(|c| match c {
                '\u{7}' | '\u{202e}' => c.escape_unicode().to_string(),
                _ => c.to_string(),
            })
            .collect();
        let err = refuse(&src, &format!("{}/{shown}", src.display()));
        assert!(
            matches!(&err, BundleError::SourceUnsafeName { reason: r, .. } if r == reason),
            "{name:?}: {err}"
        );
    }
}

#[test]
fn names_differing_only_by_case_in_source_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    fs::write(src.join("images/MAP.png"), b"other").unwrap();
    let err = refuse(&src, "images/MAP.png and images/map.png");
    assert!(
        matches!(
            err,
            BundleError::SourceManifest(ManifestError::Collision(..))
        ),
        "{err}"
    );
}

#[test]
fn file_past_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let opts = CreateOptions {
        limits: BundleLimits {
            max_file_bytes: 4096,
            ..BundleLimits::default()
        },
        ..CreateOptions::default()
    };
    let err = bundle::create(&src, &key(), &dir.path().join("x.zip"), &opts).unwrap_err();
    assert!(
        matches!(err, BundleError::SourceFileTooLarge { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("images/map.png"), "{err}");
}

#[test]
fn too_many_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let opts = CreateOptions {
        limits: BundleLimits {
            max_entries: 2,
            ..BundleLimits::default()
        },
        ..CreateOptions::default()
    };
    let err = bundle::create(&src, &key(), &dir.path().join("x.zip"), &opts).unwrap_err();
    assert!(
        matches!(err, BundleError::SourceTooManyFiles { limit: 2, .. }),
        "{err}"
    );
}

#[test]
fn files_past_total_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let opts = CreateOptions {
        limits: BundleLimits {
            max_total_bytes: 5000,
            ..BundleLimits::default()
        },
        ..CreateOptions::default()
    };
    let err = bundle::create(&src, &key(), &dir.path().join("x.zip"), &opts).unwrap_err();
    assert!(
        matches!(err, BundleError::SourceTotalTooLarge { .. }),
        "{err}"
    );
}

#[test]
fn text_file_compressing_past_ratio_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    fs::write(src.join("blank.txt"), vec![b' '; 1_000_000]).unwrap();
    let err = refuse(&src, "blank.txt");
    assert!(
        matches!(err, BundleError::SourceCompressionRatio { .. }),
        "{err}"
    );
}

#[test]
fn empty_folder_in_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    fs::create_dir(src.join("drafts")).unwrap();
    assert!(matches!(
        refuse(&src, "drafts"),
        BundleError::SourceEmptyFolder(_)
    ));
}

#[test]
fn folder_without_article_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    fs::remove_file(src.join("article.md")).unwrap();
    assert!(matches!(
        refuse(&src, "article"),
        BundleError::SourceMissingArticle(_)
    ));
}

#[test]
fn bad_front_matter_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    fs::write(
        src.join("article.md"),
        "---\ntitle: t\nauthor: a\ndate: 2026-02-30\nlanguage: en\n---\n",
    )
    .unwrap();
    let err = refuse(&src, "article.md: line 4: date");
    assert!(matches!(err, BundleError::SourceArticle { .. }), "{err}");
}

#[test]
fn output_inside_source_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let err = create(&src, &src.join("self.zip")).unwrap_err();
    assert!(matches!(err, BundleError::OutputInsideSource(_)), "{err}");
}

#[test]
fn unwritable_output_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample_in(dir.path());
    let err = create(&src, &dir.path().join("missing-folder/x.zip")).unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Runtime);
}
