//! qasid's key files and `.minisig` signatures against the real `minisign` binary.
//!
//! Proves both directions of compatibility: `minisign -V` accepts what qasid signs, and
//! `minisign -S` signs with the secret key files qasid writes (unencrypted and scrypt-encrypted),
//! producing signatures qasid accepts. Needs `minisign` on PATH (Debian package `minisign`,
//! installed by .ci/run); without it every test here fails rather than silently passing.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use qasid::keys::minisig::{sign_file, verify_file};
use qasid::keys::{write_key_pair, KeyError, KeyPairPaths, Passphrase, SecretKey};
use tempfile::TempDir;

/// Runs `minisign ARGS`, feeding `stdin`, and fails the test if minisign is not installed.
fn minisign(args: &[&str], dir: &Path, stdin: &str) -> Output {
    let mut child = Command::new("minisign")
        .args(args)
        .current_dir(dir)
        .env_remove("MINISIGN_PASSWORD")
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `minisign` ({e}): install it with `apt-get install -y minisign` \
                 (CI installs it); these compatibility tests must not be skipped"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A key pair written by qasid into a fresh folder, with a data file beside it.
struct Fixture {
    dir: TempDir,
    sk: SecretKey,
    paths: KeyPairPaths,
}

impl Fixture {
    fn new(passphrase: Option<&Passphrase>) -> Self {
        let dir = TempDir::new().unwrap();
        let sk = SecretKey::generate();
        let paths = write_key_pair(&dir.path().join("keys"), &sk, passphrase, false).unwrap();
        fs::write(
            dir.path().join("article.zip"),
            b"bundle bytes \x00\x01\x02 of an article",
        )
        .unwrap();
        Self { dir, sk, paths }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn sign_with_qasid(&self, trusted: &str) {
        let data = fs::File::open(self.path("article.zip")).unwrap();
        let sig = sign_file(&self.sk, data, trusted, "signature from qasid").unwrap();
        fs::write(self.path("article.zip.minisig"), sig).unwrap();
    }

    fn minisign_verify(&self) -> Output {
        let public = self.paths.public.to_str().unwrap();
        minisign(&["-Vm", "article.zip", "-p", public], self.dir.path(), "")
    }

    /// `minisign -S` with the qasid secret key file; `-p` makes minisign also check that the
    /// signature verifies under qasid's public key file.
    fn minisign_sign(&self, extra: &[&str], stdin: &str) -> Output {
        let mut args = vec![
            "-S",
            "-s",
            self.paths.secret.to_str().unwrap(),
            "-p",
            self.paths.public.to_str().unwrap(),
            "-m",
            "article.zip",
        ];
        args.extend_from_slice(extra);
        minisign(&args, self.dir.path(), stdin)
    }

    fn qasid_verify(&self) -> Result<String, KeyError> {
        let data = fs::File::open(self.path("article.zip")).unwrap();
        let sig = fs::read_to_string(self.path("article.zip.minisig")).unwrap();
        verify_file(self.sk.public(), data, &sig)
    }
}

#[test]
fn minisign_verifies_a_qasid_signature_and_shows_the_trusted_comment() {
    let fx = Fixture::new(None);
    fx.sign_with_qasid("qasid bundle 2024-05-01\tfile:article.zip");
    let out = fx.minisign_verify();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Trusted comment: qasid bundle 2024-05-01\tfile:article.zip"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn minisign_rejects_a_tampered_file_signed_by_qasid() {
    let fx = Fixture::new(None);
    fx.sign_with_qasid("c");
    fs::write(
        fx.path("article.zip"),
        b"bundle bytes \x00\x01\x02 of an articlE",
    )
    .unwrap();
    let out = fx.minisign_verify();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Signature verification failed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn minisign_rejects_a_tampered_trusted_comment_signed_by_qasid() {
    let fx = Fixture::new(None);
    fx.sign_with_qasid("timestamp:1");
    let sig = fs::read_to_string(fx.path("article.zip.minisig")).unwrap();
    let forged = sig.replace(
        "trusted comment: timestamp:1",
        "trusted comment: timestamp:2",
    );
    fs::write(fx.path("article.zip.minisig"), forged).unwrap();
    let out = fx.minisign_verify();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Comment signature verification failed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn minisign_signs_with_an_unencrypted_qasid_key_exactly_as_qasid_does() {
    let fx = Fixture::new(None);
    let out = fx.minisign_sign(&["-t", "made by minisign", "-c", "same comment"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fx.qasid_verify().unwrap(), "made by minisign");
    // Ed25519 is deterministic: both tools must produce the very same file.
    let theirs = fs::read_to_string(fx.path("article.zip.minisig")).unwrap();
    let data = fs::File::open(fx.path("article.zip")).unwrap();
    let ours = sign_file(&fx.sk, data, "made by minisign", "same comment").unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn minisign_signs_with_an_encrypted_qasid_key() {
    // Full-cost scrypt (256 MiB): slow in debug builds, but it proves libsodium derives the
    // same key stream from the parameters qasid really writes.
    let passphrase = Passphrase::new("minisign can open this".to_owned()).unwrap();
    let fx = Fixture::new(Some(&passphrase));
    let key_text = fs::read_to_string(&fx.paths.secret).unwrap();
    assert!(SecretKey::is_encrypted_file(&key_text).unwrap());

    let wrong = fx.minisign_sign(&["-t", "c"], "not the passphrase\n");
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("Wrong password"),
        "{}",
        text(&wrong.stderr)
    );

    let out = fx.minisign_sign(
        &["-t", "signed after unlocking"],
        "minisign can open this\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fx.qasid_verify().unwrap(), "signed after unlocking");
}

#[test]
fn qasid_refuses_minisign_legacy_signatures() {
    let fx = Fixture::new(None);
    let out = fx.minisign_sign(&["-l", "-t", "legacy"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(matches!(fx.qasid_verify(), Err(KeyError::LegacySignature)));
}

#[test]
fn qasid_refuses_a_minisign_signature_over_other_data() {
    let fx = Fixture::new(None);
    let out = fx.minisign_sign(&["-t", "c"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::write(fx.path("article.zip"), b"swapped by a mirror").unwrap();
    assert!(matches!(fx.qasid_verify(), Err(KeyError::BadSignature(_))));
}
