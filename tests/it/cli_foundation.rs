//! The foundation commands as a user runs them: `keygen`, `bundle`, `verify`, `read`, with
//! their documented outputs and exit codes (0 ok, 1 runtime, 2 usage, 3 verification).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::Command as Cmd;
use predicates::prelude::*;

fn qasid() -> Cmd {
    let mut cmd = Cmd::cargo_bin("qasid").unwrap();
    cmd.env_remove("QASID_PASSPHRASE").env("NO_COLOR", "1");
    cmd
}

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(name)
}

struct Publisher {
    dir: tempfile::TempDir,
}

impl Publisher {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        qasid()
            .args(["keygen", "--unencrypted", "--out"])
            .arg(dir.path().join("keys"))
            .assert()
            .success();
        Self { dir }
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("keys/publisher.key")
    }

    fn public(&self) -> PathBuf {
        self.dir.path().join("keys/publisher.pub")
    }

    fn bundle(&self, seed_name: &str) -> PathBuf {
        let out = self.dir.path().join(format!("{seed_name}.zip"));
        qasid()
            .arg("bundle")
            .arg(seed(seed_name))
            .arg("--key")
            .arg(self.key())
            .arg("--out")
            .arg(&out)
            .assert()
            .success();
        out
    }
}

#[test]
fn keygen_writes_an_owner_only_secret_and_a_minisign_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = qasid()
        .args(["keygen", "--unencrypted", "--json", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = report["publisher"]["key_id"].as_str().unwrap();
    assert_eq!(key_id.len(), 16);

    let mode = fs::metadata(dir.path().join("publisher.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "secret key must be created 0600");
    let public = fs::read_to_string(dir.path().join("publisher.pub")).unwrap();
    assert_eq!(
        public.lines().next().unwrap(),
        format!("untrusted comment: minisign public key {key_id}")
    );
    assert_eq!(public.lines().nth(1).unwrap(), report["publisher"]["key"]);
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let publisher = Publisher::new();
    let before = fs::read(publisher.key()).unwrap();
    qasid()
        .args(["keygen", "--unencrypted", "--out"])
        .arg(publisher.dir.path().join("keys"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert_eq!(fs::read(publisher.key()).unwrap(), before, "old key kept");
    qasid()
        .args(["keygen", "--unencrypted", "--force", "--out"])
        .arg(publisher.dir.path().join("keys"))
        .assert()
        .success();
    assert_ne!(fs::read(publisher.key()).unwrap(), before);
}

/// The first line of the secret key's base64: minisign's "Ed", then the KDF algorithm, "Sc"
/// (scrypt) for an encrypted key or two zero bytes for a plain one.
fn is_encrypted(key_file: &Path) -> bool {
    let text = fs::read_to_string(key_file).unwrap();
    let line = text.lines().nth(1).unwrap();
    assert!(line.starts_with("RW"), "not a minisign secret key: {line}");
    match &line[..6] {
        "RWRTY0" => true,
        "RWQAAE" => false,
        other => panic!("unknown key algorithm prefix {other}"),
    }
}

#[test]
fn keygen_encrypts_by_default_with_the_passphrase_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = qasid()
        .args(["keygen", "--json", "--out"])
        .arg(dir.path())
        .env("QASID_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["encrypted"], true);
    assert!(is_encrypted(&dir.path().join("publisher.key")));
}

#[test]
fn keygen_unencrypted_opts_out_even_with_a_passphrase_set() {
    let dir = tempfile::tempdir().unwrap();
    qasid()
        .args(["keygen", "--unencrypted", "--out"])
        .arg(dir.path())
        .env("QASID_PASSPHRASE", "correct horse battery staple")
        .assert()
        .success()
        .stdout(predicate::str::contains("UNENCRYPTED"));
    assert!(!is_encrypted(&dir.path().join("publisher.key")));
}

#[test]
fn keygen_without_a_terminal_or_passphrase_is_a_usage_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    qasid()
        .args(["keygen", "--out"])
        .arg(&keys)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("QASID_PASSPHRASE")
                .and(predicate::str::contains("--unencrypted")),
        );
    assert!(!keys.exists(), "nothing created");
}

#[test]
fn keygen_refuses_a_one_letter_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    for weak in ["x", "elevenchars", "aaaaaaaaaaaaaaaaaaaa"] {
        qasid()
            .args(["keygen", "--out"])
            .arg(dir.path().join("keys"))
            .env("QASID_PASSPHRASE", weak)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("too weak").and(predicate::str::contains("12 characters")),
            );
    }
    assert!(!dir.path().join("keys").exists(), "nothing created");
}

#[test]
fn encrypted_key_needs_its_passphrase_to_sign() {
    let dir = tempfile::tempdir().unwrap();
    qasid()
        .args(["keygen", "--encrypt", "--out"])
        .arg(dir.path())
        .env("QASID_PASSPHRASE", "correct horse battery staple")
        .assert()
        .success();
    assert!(
        is_encrypted(&dir.path().join("publisher.key")),
        "the old --encrypt flag still encrypts"
    );
    let out = dir.path().join("a.zip");
    let bundle = |pass: &str| {
        qasid()
            .arg("bundle")
            .arg(seed("mirror-network-launch"))
            .arg("--key")
            .arg(dir.path().join("publisher.key"))
            .arg("--out")
            .arg(&out)
            .env("QASID_PASSPHRASE", pass)
            .assert()
    };
    bundle("wrong passphrase")
        .code(2)
        .stderr(predicate::str::contains("wrong passphrase"));
    assert!(!out.exists(), "nothing written with a wrong passphrase");
    bundle("correct horse battery staple").success();
    qasid()
        .arg("verify")
        .arg(&out)
        .arg("--publisher")
        .arg(dir.path().join("publisher.pub"))
        .assert()
        .success();
}

#[test]
fn every_seed_bundles_verifies_and_is_deterministic() {
    let publisher = Publisher::new();
    for name in [
        "mirror-network-launch",
        "urdu-press-freedom",
        "long-read-shutdown-economics",
    ] {
        let first = publisher.bundle(name);
        let bytes = fs::read(&first).unwrap();
        let second = publisher.dir.path().join("again.zip");
        qasid()
            .arg("bundle")
            .arg(seed(name))
            .arg("--key")
            .arg(publisher.key())
            .arg("--out")
            .arg(&second)
            .assert()
            .success();
        assert_eq!(
            bytes,
            fs::read(&second).unwrap(),
            "{name}: not deterministic"
        );
        qasid()
            .arg("verify")
            .arg(&first)
            .arg("--publisher")
            .arg(publisher.public())
            .assert()
            .success()
            .stdout(predicate::str::contains("verified:"));
    }
}

#[test]
fn verify_json_reports_the_article_and_publisher() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("urdu-press-freedom");
    let inline_key = fs::read_to_string(publisher.public())
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    let out = qasid()
        .arg("verify")
        .arg(&bundle)
        .args(["--json", "--publisher", &inline_key])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["language"], "ur");
    assert_eq!(report["name"], "urdu-press-freedom");
    assert_eq!(report["publisher"]["key"], inline_key.as_str());
    assert_eq!(report["manifest_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_changed_byte_fails_with_exit_3_and_names_the_problem() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("mirror-network-launch");
    let mut bytes = fs::read(&bundle).unwrap();
    // The PNG is stored, so its bytes sit in the zip as they are: change one in the middle.
    let png = fs::read(seed("mirror-network-launch").join("images/mirror-map.png")).unwrap();
    let at = bytes
        .windows(png.len())
        .position(|w| w == png.as_slice())
        .expect("stored image in zip");
    bytes[at + png.len() / 2] ^= 0x01;
    fs::write(&bundle, &bytes).unwrap();
    qasid()
        .arg("verify")
        .arg(&bundle)
        .arg("--publisher")
        .arg(publisher.public())
        .assert()
        .code(3)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("images/mirror-map.png"));
}

#[test]
fn another_publishers_key_fails_with_exit_3() {
    let publisher = Publisher::new();
    let other = Publisher::new();
    let bundle = publisher.bundle("mirror-network-launch");
    qasid()
        .arg("verify")
        .arg(&bundle)
        .arg("--publisher")
        .arg(other.public())
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "signature does not match publisher",
        ));
}

#[test]
fn bundle_with_the_public_key_names_the_secret_key_instead_of_advising_chmod() {
    let publisher = Publisher::new();
    let out = publisher.dir.path().join("a.zip");
    qasid()
        .arg("bundle")
        .arg(seed("mirror-network-launch"))
        .arg("--key")
        .arg(publisher.public())
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("is a public key")
                .and(predicate::str::contains(
                    publisher.key().display().to_string(),
                ))
                .and(predicate::str::contains("chmod").not())
                .and(predicate::str::contains("wrong length").not()),
        );
    assert!(!out.exists());
}

#[test]
fn verify_with_a_missing_publisher_file_says_no_such_file() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("mirror-network-launch");
    qasid()
        .arg("verify")
        .arg(&bundle)
        .args(["--publisher", "nonexist.pub"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("nonexist.pub: no such file")
                .and(predicate::str::contains("base64").count(1))
                .and(predicate::str::contains("invalid base64").not()),
        );
}

#[test]
fn usage_errors_exit_2_and_missing_files_exit_1() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("mirror-network-launch");
    qasid()
        .arg("verify")
        .arg(&bundle)
        .args(["--publisher", "not-a-key"])
        .assert()
        .code(2);
    qasid().args(["verify", "--no-such-flag"]).assert().code(2);
    qasid()
        .arg("verify")
        .arg(publisher.dir.path().join("missing.zip"))
        .arg("--publisher")
        .arg(publisher.public())
        .assert()
        .code(1);
}

#[test]
fn read_renders_the_verified_article_in_the_terminal() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("long-read-shutdown-economics");
    let out = qasid()
        .arg("read")
        .arg(&bundle)
        .arg("--publisher")
        .arg(publisher.public())
        .args(["--width", "60"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("-- verified: signed by publisher"));
    assert!(text.contains("References"), "links are listed");
    assert!(
        !text.contains("\n---\ntitle:"),
        "front matter is not shown raw"
    );
    for line in text
        .lines()
        .filter(|l| !l.starts_with('[') && !l.starts_with("--"))
    {
        assert!(
            unicode_columns(line) <= 60,
            "line wider than 60 columns: {line:?}"
        );
    }
}

fn unicode_columns(line: &str) -> usize {
    line.chars().count()
}

#[test]
fn read_renders_urdu_text_unchanged() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("urdu-press-freedom");
    let source = fs::read_to_string(seed("urdu-press-freedom").join("article.md")).unwrap();
    let title = source
        .lines()
        .find_map(|l| l.strip_prefix("title: "))
        .unwrap()
        .to_owned();
    qasid()
        .arg("read")
        .arg(&bundle)
        .arg("--publisher")
        .arg(publisher.public())
        .assert()
        .success()
        .stdout(predicate::str::contains(title));
}

#[test]
fn read_out_extracts_only_after_verification() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("mirror-network-launch");
    let out_dir = publisher.dir.path().join("extracted");
    qasid()
        .arg("read")
        .arg(&bundle)
        .arg("--publisher")
        .arg(publisher.public())
        .arg("--out")
        .arg(&out_dir)
        .assert()
        .success();
    assert_eq!(
        fs::read(out_dir.join("images/mirror-map.png")).unwrap(),
        fs::read(seed("mirror-network-launch").join("images/mirror-map.png")).unwrap()
    );

    // A tampered copy extracts nothing at all.
    let mut bytes = fs::read(&bundle).unwrap();
    let last = bytes.len() - 30;
    bytes.truncate(last);
    let broken = publisher.dir.path().join("broken.zip");
    fs::write(&broken, bytes).unwrap();
    let refused_dir = publisher.dir.path().join("refused");
    qasid()
        .arg("read")
        .arg(&broken)
        .arg("--publisher")
        .arg(publisher.public())
        .arg("--out")
        .arg(&refused_dir)
        .assert()
        .code(3);
    assert!(!refused_dir.exists(), "nothing may be written on failure");
    let leftovers: Vec<_> = fs::read_dir(publisher.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );
}

#[test]
fn stock_minisign_verifies_the_bundle_qasid_wrote() {
    let publisher = Publisher::new();
    let bundle = publisher.bundle("urdu-press-freedom");
    let out = Command::new("minisign")
        .arg("-Vm")
        .arg(&bundle)
        .arg("-p")
        .arg(publisher.public())
        .output()
        .expect("minisign must be installed (apt-get install minisign; .ci/run does it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("qasid bundle name=urdu-press-freedom version=1 sha256="));
}

#[test]
fn version_names_the_formats_it_speaks() {
    qasid()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains("qasid-bundle/1"));
}
