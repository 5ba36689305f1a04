//! Mirror notes end to end: `note create` / `note show` with the real binary, QR codes read
//! back by a real decoder (zbarimg), DNS TXT records served by a real dnsmasq, and readers
//! whose own mirrors are all blocked reaching an article through a note's mirrors.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qasid::keys::{write_key_pair, SecretKey};
use qasid::note::{Note, NoteMirror, SignedNote};
use tempfile::TempDir;

use crate::reader_support::{
    code, fetch, json_of, key, make_bundle, other_key, publish, qasid, stderr, Behaviour, Tarpit,
    TestMirror,
};

/// Five mirror URLs of the length real ones have (35-45 characters).
const FIVE_MIRRORS: [&str; 5] = [
    "https://news-mirror-one.example.org/",
    "https://qasid.mirror-two.example.net/",
    "https://m3.independent-press.example/",
    "https://cdn-four.example.com/qasid/",
    "https://fifth-mirror.example.co.uk/news/",
];

/// A key pair on disk (unencrypted) for the CLI: (secret key path, public key path).
fn key_files(dir: &Path, sk: &SecretKey) -> (PathBuf, PathBuf) {
    let paths = write_key_pair(&dir.join("keys"), sk, None, false).unwrap();
    (paths.secret, paths.public)
}

/// `qasid note create` with these args; returns its stdout (the URI first).
fn create(secret: &Path, args: &[&str]) -> String {
    let out = qasid()
        .args(["note", "create", "--key"])
        .arg(secret)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn mirror_args(urls: &[&str]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["--mirror".to_owned(), u.to_string()])
        .collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A note signed by `signer` directly through the library (for notes the CLI will not make).
fn signed(signer: &SecretKey, sequence: u64, expires: u64, urls: &[&str]) -> String {
    Note {
        publisher: signer.public().id(),
        sequence,
        expires,
        mirrors: urls.iter().map(|u| NoteMirror::parse(u).unwrap()).collect(),
    }
    .sign(signer)
    .unwrap()
    .to_uri()
}

#[test]
fn create_then_show_round_trips_and_five_mirrors_fit_in_600_characters() {
    let dir = TempDir::new().unwrap();
    let (secret, public) = key_files(dir.path(), &key());
    let mut args = mirror_args(&FIVE_MIRRORS);
    args.push("--mirror".into());
    args.push("proxy:https://blocked.example/".into());
    args.extend([
        "--subset".into(),
        "5".into(),
        "--label".into(),
        "sms".into(),
    ]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let five = create(&secret, &arg_refs[..10]);
    let uri = five.trim();
    assert!(uri.starts_with("qasid:1:"), "{uri}");
    assert!(
        uri.len() <= 600,
        "five mirrors made {} characters",
        uri.len()
    );

    let out = qasid()
        .args(["note", "show", uri, "--json", "--publisher"])
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    let urls: Vec<&str> = doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, FIVE_MIRRORS);
    let sequence = doc["sequence"].as_u64().unwrap();
    assert!(
        sequence.abs_diff(now_secs()) < 120,
        "default sequence is the Unix time"
    );
    assert_eq!(doc["uri"], uri);

    // --subset picks the same 5 of 6 for the same label every time, a hint survives.
    let a = create(&secret, &[&arg_refs[..], &["--sequence", "7"]].concat());
    let b = create(&secret, &[&arg_refs[..], &["--sequence", "7"]].concat());
    let va = SignedNote::from_uri(&a)
        .unwrap()
        .verify(&[key().public().clone()])
        .unwrap();
    let vb = SignedNote::from_uri(&b)
        .unwrap()
        .verify(&[key().public().clone()])
        .unwrap();
    assert_eq!(va.note().mirrors, vb.note().mirrors);
    assert_eq!(va.note().mirrors.len(), 5);
}

#[test]
fn every_tampered_byte_and_the_wrong_key_are_refused_with_exit_3() {
    let dir = TempDir::new().unwrap();
    let (secret, public) = key_files(dir.path(), &key());
    let uri = create(
        &secret,
        &["--mirror", FIVE_MIRRORS[0], "--mirror", FIVE_MIRRORS[1]],
    );
    let good = SignedNote::from_uri(&uri).unwrap();
    let trusted = [key().public().clone()];
    for i in 0..good.as_bytes().len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = good.as_bytes().to_vec();
            bytes[i] ^= bit;
            let text = format!(
                "qasid:1:{}",
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &bytes)
            );
            assert!(
                SignedNote::from_uri(&text)
                    .and_then(|s| s.verify(&trusted))
                    .is_err(),
                "byte {i} flipped with {bit:#x} was accepted"
            );
        }
    }
    let mut bytes = good.as_bytes().to_vec();
    bytes[9] ^= 1; // inside the sequence
    let tampered = format!(
        "qasid:1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &bytes)
    );
    let out = qasid()
        .args(["note", "show", &tampered, "--publisher"])
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("signature"), "{}", stderr(&out));

    let out = qasid()
        .args(["note", "show", uri.trim(), "--publisher"])
        .arg(other_key().public().to_base64())
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a trusted publisher"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_expired_note_is_refused() {
    let expired = signed(&key(), 10, now_secs() - 60, &[FIVE_MIRRORS[0]]);
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("note.txt");
    std::fs::write(&file, format!("# from the flyer\n{expired}\n")).unwrap();
    let out = qasid()
        .args(["note", "show"])
        .arg(&file)
        .args(["--publisher", &key().public().to_base64()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    let out = fetch(&dir.path().join("state"), &["--note", &expired]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[test]
fn the_qr_code_decodes_back_to_the_same_uri() {
    let dir = TempDir::new().unwrap();
    let (secret, _) = key_files(dir.path(), &key());
    let png = dir.path().join("flyer.png");
    let mut args = mirror_args(&FIVE_MIRRORS);
    args.extend(["--qr".into(), png.to_str().unwrap().to_owned()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let uri = create(&secret, &arg_refs);
    let out = StdCommand::new("zbarimg")
        .args(["--quiet", "--raw"])
        .arg(&png)
        .output()
        .expect("zbarimg (zbar-tools) is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uri.trim());

    let svg = dir.path().join("flyer.svg");
    create(
        &secret,
        &["--mirror", FIVE_MIRRORS[0], "--qr", svg.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("</svg>"), "{text}");

    let out = qasid()
        .args(["note", "create", "--key"])
        .arg(&secret)
        .args(["--mirror", FIVE_MIRRORS[0], "--qr", "flyer.jpg"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// A published repo with article `alpha`, served by a real mirror.
fn repo_with_alpha(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    let alpha = make_bundle(dir, &key(), "alpha", 1, 20_000);
    publish(&root, &key(), &[alpha.path()]);
    root
}

#[test]
fn a_reader_whose_mirrors_are_all_tarpits_reaches_the_article_through_a_note() {
    let dir = TempDir::new().unwrap();
    let root = repo_with_alpha(dir.path());
    let good = TestMirror::start(&root, Behaviour::default());
    let pits: Vec<Tarpit> = (0..3).map(|_| Tarpit::start()).collect();
    let note = signed(&key(), now_secs(), now_secs() + 86400, &[&good.url]);
    let config = dir.path().join("mirrors.toml");
    let pit_list: Vec<String> = pits.iter().map(|p| format!("{:?}", p.url)).collect();
    std::fs::write(
        &config,
        format!(
            "[reader]\nmirrors = [{}]\nnotes = [{note:?}]\n",
            pit_list.join(", ")
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let started = Instant::now();
    let out = fetch(
        &dir.path().join("state"),
        &[
            "alpha",
            "--json",
            "--config",
            config.to_str().unwrap(),
            "--timeout",
            "2s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(out_dir.join("alpha-v1.zip").is_file());
    let doc = json_of(&out);
    let m = doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mirror"] == good.url.as_str())
        .expect("the note's mirror is in the report");
    assert_eq!(m["origin"], "note");
    assert_eq!(m["fate"], "ok");
    assert_eq!(doc["notes"][0]["ok"], true);
    // Remembered like a mirror learned from an index.
    let known = std::fs::read_to_string(dir.path().join("state/known-mirrors.txt")).unwrap();
    assert!(known.contains(&good.url), "{known}");
}

#[test]
fn an_older_note_is_refused_after_a_newer_one() {
    let dir = TempDir::new().unwrap();
    let root = repo_with_alpha(dir.path());
    let good = TestMirror::start(&root, Behaviour::default());
    let state = dir.path().join("state");
    let newer = signed(&key(), 200, now_secs() + 3600, &[&good.url]);
    let older = signed(&key(), 100, now_secs() + 3600, &[&good.url]);
    let out = fetch(&state, &["--note", &newer]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Serve the older note from a URL: a replay through any channel is refused the same way.
    let note_file = root.join("old-note.txt");
    std::fs::write(&note_file, format!("{older}\n")).unwrap();
    let url = format!("{}old-note.txt", good.url);
    let out = fetch(&state, &["--note", &url, "--json"]);
    // The mirror learned earlier still works; the replayed note is reported, not used.
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(doc["notes"][0]["ok"], false);
    assert!(
        doc["notes"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rollback"),
        "{doc:#}"
    );
    // With nothing else to go on, the refused note is the verification failure (exit 3).
    std::fs::remove_file(state.join("known-mirrors.txt")).unwrap();
    let out = fetch(&state, &["--note", &url]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("rollback"), "{}", stderr(&out));
    // The newer one is still accepted (same sequence, same note).
    let out = fetch(&state, &["--note", &newer]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// A free UDP (and TCP) port on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// dnsmasq in the foreground, answering only its own TXT records; killed on drop.
struct Dnsmasq(Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dnsmasq(port: u16, name: &str, strings: &[String]) -> Dnsmasq {
    // On the command line dnsmasq takes quotes literally: the strings go in bare (base64url
    // has no commas).
    let record = format!("--txt-record={name},{}", strings.join(","));
    let child = StdCommand::new("dnsmasq")
        .args([
            "--no-daemon",
            "--keep-in-foreground",
            &format!("--port={port}"),
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--pid-file=",
            &record,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq is installed");
    let server = Dnsmasq(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "dnsmasq did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn a_note_in_dns_txt_records_served_by_dnsmasq_leads_to_the_article() {
    let dir = TempDir::new().unwrap();
    let root = repo_with_alpha(dir.path());
    let good = TestMirror::start(&root, Behaviour::default());
    let (secret, _) = key_files(dir.path(), &key());
    // Long enough that the record needs several strings.
    let mut args = mirror_args(&FIVE_MIRRORS);
    args.extend(["--mirror".into(), good.url.clone()]);
    args.extend(["--dns".into(), "_qasid.news.test".into()]);
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = create(&secret, &arg_refs);
    let uri = printed.lines().next().unwrap().to_owned();
    let zone = printed
        .lines()
        .find(|l| l.starts_with("_qasid.news.test 3600 IN TXT "))
        .unwrap_or_else(|| panic!("no zone line in {printed}"));
    let strings: Vec<String> = zone
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(strings.len() >= 2, "{zone}");
    assert!(strings.iter().all(|s| s.len() <= 255));
    assert_eq!(strings.concat(), uri);

    let port = free_port();
    let _dns = start_dnsmasq(port, "_qasid.news.test", &strings);
    let out_dir = dir.path().join("out");
    let out = fetch(
        &dir.path().join("state"),
        &[
            "alpha",
            "--note",
            "dns:_qasid.news.test",
            "--dns-server",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "2s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out_dir.join("alpha-v1.zip").is_file());
    assert!(
        stderr(&out).contains("note from dns:_qasid.news.test"),
        "{}",
        stderr(&out)
    );

    // With a proxy set, plain DNS would go around it: refused, DNS over HTTPS is required.
    let out = fetch(
        &dir.path().join("state2"),
        &[
            "--note",
            "dns:_qasid.news.test",
            "--dns-server",
            &format!("127.0.0.1:{port}"),
            "--proxy",
            "socks5h://127.0.0.1:9",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("DNS-over-HTTPS"), "{}", stderr(&out));
}
