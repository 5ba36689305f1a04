//! Regenerates the checked-in seed corpus in `fuzz/seeds/<target>/` from real qasid output:
//! the test vector and bundles of the repo's `seeds/` articles (signed with the test vector
//! key, seed `0x42` × 32), the manifests inside them, a repo published from them (index heads,
//! envelopes, pieces), key files, `.minisig` texts, `mirrors.toml` and front matter.
//!
//! Run from `fuzz/`: `cargo run --example make_seeds`. Deterministic: the same inputs give the
//! same files, so re-running it only changes seeds when a format changed.

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use qasid::bundle::{self, CreateOptions};
use qasid::index::MirrorUrl;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::repo::{PublishRequest, Repo};
use qasid_fuzz::secret_key;

/// The passphrase the fuzz_keys target tries on cheaply encrypted key files.
const PASSPHRASE: &str = "qasid fuzz passphrase";

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let main = fuzz.parent().unwrap();
    let out = fuzz.join("seeds");
    let _ = fs::remove_dir_all(&out);
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = out.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    };
    let work = tempfile::tempdir().unwrap();
    let key = secret_key();

    // Bundles: the vector, and each article of seeds/.
    let vector = fs::read(main.join("tests/vectors/bundle-v1/bundle.zip")).unwrap();
    let mut bundles: Vec<(String, PathBuf)> = Vec::new();
    let vector_path = work.path().join("hello-qasid.zip");
    fs::write(&vector_path, &vector).unwrap();
    bundles.push(("hello-qasid".into(), vector_path));
    let mut articles: Vec<PathBuf> = fs::read_dir(main.join("seeds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    articles.sort();
    for dir in &articles {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let zip = work.path().join(format!("{name}.zip"));
        bundle::create(dir, key, &zip, &CreateOptions::default()).unwrap();
        bundles.push((name, zip));
    }
    for (name, path) in &bundles {
        let bytes = fs::read(path).unwrap();
        put("fuzz_bundle_verify", &format!("{name}.zip"), &bytes);
        put(
            "fuzz_push_body",
            &format!("bundle-{name}"),
            &[&[0x00][..], &bytes].concat(),
        );
        put(
            "fuzz_push_body",
            &format!("bundle-fixup-{name}"),
            &[&[0x10][..], &bytes].concat(),
        );
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
        let mut manifest = Vec::new();
        archive
            .by_name("manifest.json")
            .unwrap()
            .read_to_end(&mut manifest)
            .unwrap();
        put("fuzz_manifest", &format!("{name}.json"), &manifest);
    }

    // A repo: three publishes (one bundle, two more, a retraction).
    let root = work.path().join("repo");
    let repo = Repo::new(
        &root,
        key.public(),
        IndexLimits::default(),
        BundleLimits::default(),
    );
    let mirrors = vec![
        MirrorUrl::parse("https://mirror.example/", &IndexLimits::default()).unwrap(),
        MirrorUrl::parse("http://[2001:db8::1]:8080/qasid/", &IndexLimits::default()).unwrap(),
    ];
    let start = humantime::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let steps: [(&[usize], &[&str]); 3] = [(&[0], &[]), (&[1, 2], &[]), (&[3], &["hello-qasid"])];
    let publisher_dir = root.join(format!("qasid/v1/publishers/{}", key.public().hex()));
    for (i, (adds, retract)) in steps.iter().enumerate() {
        let request = PublishRequest {
            bundles: adds.iter().map(|&b| bundles[b].1.clone()).collect(),
            retract: retract.iter().map(|s| s.to_string()).collect(),
            refresh: false,
            mirrors: Some(mirrors.clone()),
            expires_in: Duration::from_secs(7 * 86_400),
            now: start + Duration::from_secs(3600 * i as u64),
        };
        repo.publish(key, &request).unwrap();
        let envelope = fs::read(publisher_dir.join("index.json")).unwrap();
        let n = i + 1;
        put("fuzz_index_head", &format!("envelope-{n}.json"), &envelope);
        let value: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
        let head = B64.decode(value["head"].as_str().unwrap()).unwrap();
        put("fuzz_index_head", &format!("head-{n}.json"), &head);
        put(
            "fuzz_push_body",
            &format!("index-{n}"),
            &[&[0x02][..], &envelope].concat(),
        );
        put(
            "fuzz_push_body",
            &format!("index-head-{n}"),
            &[&[0x12][..], &head].concat(),
        );
    }
    let mut pieces: Vec<PathBuf> = fs::read_dir(publisher_dir.join("pieces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pieces.sort();
    for (i, path) in pieces.iter().enumerate() {
        let bytes = fs::read(path).unwrap();
        put("fuzz_index_piece", &format!("piece-{i}.json"), &bytes);
        put(
            "fuzz_push_body",
            &format!("piece-{i}"),
            &[&[0x01][..], &bytes].concat(),
        );
    }
    // Regression: a piece starting at u64::MAX overflowed the range check's error message.
    let first = fs::read_to_string(&pieces[0]).unwrap();
    let at_max = first.replacen("\"first\":0,", "\"first\":18446744073709551615,", 1);
    assert_ne!(at_max, first);
    put(
        "fuzz_index_piece",
        "piece-first-max.json",
        at_max.as_bytes(),
    );

    // Keys and signatures.
    let public = key.public();
    put(
        "fuzz_keys",
        "publisher.pub",
        public.to_file_text().as_bytes(),
    );
    put("fuzz_keys", "publisher-line", public.to_base64().as_bytes());
    let secret = key.to_file_text(None);
    put("fuzz_keys", "publisher.key", secret.as_bytes());
    put(
        "fuzz_keys",
        "publisher-encrypted.key",
        cheaply_encrypted(&secret).as_bytes(),
    );
    let minisig = fs::read(main.join("tests/vectors/bundle-v1/bundle.zip.minisig")).unwrap();
    put("fuzz_keys", "bundle.zip.minisig", &minisig);
    put(
        "fuzz_push_body",
        "minisig",
        &[&[0x03][..], &minisig].concat(),
    );

    // Configuration.
    put(
        "fuzz_config",
        "mirrors.toml",
        &fs::read(main.join("mirrors.toml")).unwrap(),
    );
    let full = format!(
        "[mirror]\nlisten = \"[::]:9000\"\nstore = \"store\"\nkeep = \"current\"\n\
         max_push_bytes = \"64 MiB\"\nmax_connections = 10\nheader_timeout = \"5s\"\n\
         idle_timeout = \"1m\"\nshutdown_grace = \"2s\"\n\n[[publisher]]\nname = \"Daily\"\n\
         key = \"{}\"\n\n[[upstream]]\nurl = \"https://mirror.example.org/\"\n\
         proxy = \"socks5h://127.0.0.1:9050\"\n\n[sync]\ninterval = \"10m\"\n\
         use_index_mirrors = true\nconnect_timeout = \"3s\"\nread_timeout = \"7s\"\n\
         max_downloads = 4\nprune_grace = \"2h\"\n\n[reader]\nmirrors = [\"https://a.example/\", \
         \"file:///media/usb/repo\", {{ url = \"http://b.example/\", proxy = \"http://127.0.0.1:3128\" }}]\n\
         proxy = \"socks5://127.0.0.1:1080\"\nrace_window = \"200ms\"\nhedge_delay = \"1s\"\n",
        public.to_base64()
    );
    put("fuzz_config", "full.toml", full.as_bytes());

    // Front matter.
    let mut texts = vec![(
        "hello-qasid".to_owned(),
        main.join("tests/vectors/bundle-v1/hello-qasid/article.md"),
    )];
    for dir in &articles {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        texts.push((name, dir.join("article.md")));
    }
    for (name, path) in texts {
        let text = fs::read_to_string(path).unwrap();
        // The front matter and the start of the body are what the parser reads.
        let cut = text.char_indices().nth(1500).map_or(text.len(), |(i, _)| i);
        put(
            "fuzz_front_matter",
            &format!("{name}.md"),
            &text.as_bytes()[..cut],
        );
    }
    println!("seeds written to {}", out.display());
}

/// `secret` (an unencrypted key file) encrypted as minisign does, at the lowest cost libsodium
/// allows (opslimit 2^15, memlimit 2^24: N = 2^10, r = 8, p = 1), so the fuzz_keys target can
/// afford to decrypt it on every input.
fn cheaply_encrypted(secret: &str) -> String {
    let (comment, line) = secret.trim_end().split_once('\n').unwrap();
    let mut raw = B64.decode(line).unwrap();
    let salt = [7u8; 32];
    raw[2..4].copy_from_slice(b"Sc");
    raw[6..38].copy_from_slice(&salt);
    raw[38..46].copy_from_slice(&(1u64 << 15).to_le_bytes());
    raw[46..54].copy_from_slice(&(1u64 << 24).to_le_bytes());
    let params = scrypt::Params::new(10, 8, 1, 32).unwrap();
    let mut stream = [0u8; 104];
    scrypt::scrypt(PASSPHRASE.as_bytes(), &salt, &params, &mut stream).unwrap();
    for (byte, key) in raw[54..].iter_mut().zip(stream) {
        *byte ^= key;
    }
    format!("{comment}\n{}\n", B64.encode(raw))
}
