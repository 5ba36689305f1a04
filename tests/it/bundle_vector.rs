//! The checked-in bundle vector `tests/vectors/bundle-v1/`: qasid must rebuild it byte for byte
//! from its source folder and seed, verify it, and standard tools (minisign, sha256sum, unzip,
//! openssl) must verify it without qasid.
//!
//! To regenerate after a deliberate format change: `QASID_REGENERATE_VECTORS=1 cargo test
//! --test bundle_vector`, then review the diff.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use qasid::bundle::{self, CreateOptions};
use qasid::keys::{minisig, PublicKey, SecretKey};
use qasid::limits::BundleLimits;

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/bundle-v1")
}

fn secret_key() -> SecretKey {
    let text = fs::read_to_string(vector_dir().join("seed.hex")).unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).unwrap();
    SecretKey::from_seed(&seed)
}

fn publisher() -> PublicKey {
    let text = fs::read_to_string(vector_dir().join("publisher.pub")).unwrap();
    PublicKey::from_file_text(&text).unwrap()
}

const TRUSTED_COMMENT_PREFIX: &str = "qasid bundle name=hello-qasid version=1 sha256=";

#[test]
fn vector_rebuilds_byte_for_byte() {
    let dir = vector_dir();
    let key = secret_key();
    let out = tempfile::tempdir().unwrap();
    let created = bundle::create(
        &dir.join("hello-qasid"),
        &key,
        &out.path().join("bundle.zip"),
        &CreateOptions::default(),
    )
    .unwrap();
    let zip = fs::read(created.path()).unwrap();
    let minisig = fs::read_to_string(created.minisig_path()).unwrap();
    let sha256_line = format!("{}  bundle.zip\n", created.sha256());
    if std::env::var_os("QASID_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        fs::write(dir.join("publisher.pub"), key.public().to_file_text()).unwrap();
        fs::write(dir.join("bundle.zip"), &zip).unwrap();
        fs::write(dir.join("bundle.zip.minisig"), &minisig).unwrap();
        fs::write(dir.join("bundle.sha256"), &sha256_line).unwrap();
        return;
    }
    assert_eq!(
        key.public(),
        &publisher(),
        "seed.hex and publisher.pub disagree"
    );
    assert!(
        zip == fs::read(dir.join("bundle.zip")).unwrap(),
        "rebuilt bundle differs from tests/vectors/bundle-v1/bundle.zip"
    );
    assert_eq!(
        sha256_line,
        fs::read_to_string(dir.join("bundle.sha256")).unwrap()
    );
    assert_eq!(
        minisig,
        fs::read_to_string(dir.join("bundle.zip.minisig")).unwrap()
    );
}

#[test]
fn vector_verifies_and_extracts() {
    let dir = vector_dir();
    let limits = BundleLimits::default();
    let verified = bundle::verify_file(&dir.join("bundle.zip"), &publisher(), &limits).unwrap();
    let manifest = verified.manifest();
    assert_eq!(
        (manifest.name(), manifest.version(), manifest.title()),
        ("hello-qasid", 1, "Hello from qasid")
    );
    let paths: Vec<&str> = manifest.files().iter().map(|f| f.path().as_str()).collect();
    assert_eq!(paths, ["article.md", "images/pixel.png"]);

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("hello");
    bundle::extract_verified(&dir.join("bundle.zip"), &publisher(), &limits, &target).unwrap();
    for path in paths {
        assert_eq!(
            fs::read(target.join(path)).unwrap(),
            fs::read(dir.join("hello-qasid").join(path)).unwrap()
        );
    }
}

#[test]
fn vector_minisig_verifies_and_authenticates_the_zip_hash() {
    let dir = vector_dir();
    let zip = fs::File::open(dir.join("bundle.zip")).unwrap();
    let text = fs::read_to_string(dir.join("bundle.zip.minisig")).unwrap();
    let trusted = minisig::verify_file(&publisher(), zip, &text).unwrap();
    let sha256 = fs::read_to_string(dir.join("bundle.sha256")).unwrap();
    let hex = sha256.split_whitespace().next().unwrap();
    assert_eq!(trusted, format!("{TRUSTED_COMMENT_PREFIX}{hex}"));
}

/// Runs a third-party tool in the vector folder. A missing tool fails the test: `.ci/run`
/// installs them all, and a check that silently skips proves nothing.
fn tool(program: &str, args: &[&str], cwd: &Path) -> Option<std::process::Output> {
    match Command::new(program).args(args).current_dir(cwd).output() {
        Ok(output) => Some(output),
        Err(e) => panic!("{program}: {e} (install it: apt-get install minisign openssl unzip jq)"),
    }
}

fn assert_success(program: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{program} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn third_party_tools_verify_the_vector() {
    let dir = vector_dir();
    if let Some(out) = tool(
        "minisign",
        &["-Vm", "bundle.zip", "-p", "publisher.pub"],
        &dir,
    ) {
        assert_success("minisign", &out);
        assert!(String::from_utf8_lossy(&out.stdout).contains(TRUSTED_COMMENT_PREFIX));
    }
    if let Some(out) = tool("sha256sum", &["-c", "bundle.sha256"], &dir) {
        assert_success("sha256sum", &out);
    }
    if let Some(out) = tool("unzip", &["-t", "bundle.zip"], &dir) {
        assert_success("unzip", &out);
    }

    // The manifest signature: ed25519 over "qasid-bundle-manifest-v1\n" ‖ manifest.json,
    // checked by openssl with the raw key from publisher.pub wrapped in SubjectPublicKeyInfo.
    let work = tempfile::tempdir().unwrap();
    let Some(manifest) = tool("unzip", &["-p", "bundle.zip", "manifest.json"], &dir) else {
        return;
    };
    let Some(signature) = tool("unzip", &["-p", "bundle.zip", "manifest.sig"], &dir) else {
        return;
    };
    let mut message = b"qasid-bundle-manifest-v1\n".to_vec();
    message.extend_from_slice(&manifest.stdout);
    fs::write(work.path().join("message"), message).unwrap();
    fs::write(work.path().join("manifest.sig"), &signature.stdout).unwrap();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(publisher().as_bytes());
    use base64::Engine as _;
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(spki)
    );
    fs::write(work.path().join("publisher.pem"), pem).unwrap();
    let args = [
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "publisher.pem",
        "-rawin",
        "-in",
        "message",
        "-sigfile",
        "manifest.sig",
    ];
    if let Some(out) = tool("openssl", &args, work.path()) {
        assert_success("openssl", &out);
    }
}

/// Runs contrib/verify-bundle.sh (standard tools only, the procedure of docs/FORMAT.md).
fn third_party_script(bundle: &Path, publisher_pub: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/verify-bundle.sh");
    Command::new("sh")
        .arg(script)
        .arg(bundle)
        .arg(publisher_pub)
        .output()
        .expect("run sh")
}

/// Copies the vector bundle, replacing the bytes of one file entry (with a correct crc, so
/// only the manifest's sha256 can catch it).
fn vector_with_replaced_file(entry: &str, data: &[u8], out: &Path) {
    use std::io::{Read as _, Write as _};
    let mut archive =
        zip::ZipArchive::new(fs::File::open(vector_dir().join("bundle.zip")).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(fs::File::create(out).unwrap());
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let name = file.name().to_owned();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        writer.start_file(name.as_str(), options).unwrap();
        writer
            .write_all(if name == entry { data } else { &bytes })
            .unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn documented_third_party_procedure_accepts_the_vector() {
    let dir = vector_dir();
    let out = third_party_script(&dir.join("bundle.zip"), &dir.join("publisher.pub"));
    assert_success("contrib/verify-bundle.sh", &out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn documented_third_party_procedure_rejects_a_changed_file() {
    let work = tempfile::tempdir().unwrap();
    let forged = work.path().join("forged.zip");
    vector_with_replaced_file(
        "files/images/pixel.png",
        b"not the publisher's image",
        &forged,
    );
    let out = third_party_script(&forged, &vector_dir().join("publisher.pub"));
    assert!(
        !out.status.success(),
        "a changed file must fail the openssl procedure"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("images/pixel.png"));
}

#[test]
fn documented_third_party_procedure_rejects_another_publishers_key() {
    let work = tempfile::tempdir().unwrap();
    let other = SecretKey::from_seed(&[7u8; 32]);
    let pub_path = work.path().join("other.pub");
    fs::write(&pub_path, other.public().to_file_text()).unwrap();
    let out = third_party_script(&vector_dir().join("bundle.zip"), &pub_path);
    assert!(
        !out.status.success(),
        "another key must fail the openssl procedure"
    );
}
