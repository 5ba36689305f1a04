//! The verifying reader page (`qasid reader-page`, a mirror's `/reader.html`) in real headless
//! Chromium, driven by Playwright (`web/test/drive.mjs`, playwright-core with Debian's
//! /usr/bin/chromium), against real servers on loopback: a `qasid mirror`, nginx running the
//! CORS-enabled block documented in docs/PROTOCOL.md, a tarpit, and static mirrors that serve a
//! forged bundle at the real bundle's address, an older index, and a re-spaced index. Every
//! assertion is on what the page shows (the DOM) and on the requests it made.
//! Needs node, web/test/node_modules (`scripts/test.sh` or `npm ci` in web/test) and chromium;
//! without them the tests fail with the command to run, never skip.

use crate::mirror_support;
use crate::reader_support::{bundle_path, copy_tree, index_path, publish, tamper, Tarpit};
use crate::static_nginx::Nginx;

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use qasid::bundle::{self, CreateOptions, CreatedBundle};
use qasid::keys::SecretKey;
use qasid::limits::BundleLimits;
use serde_json::{json, Value};
use tempfile::TempDir;

const PIXEL: &[u8] = include_bytes!("../vectors/bundle-v1/hello-qasid/images/pixel.png");

fn key() -> SecretKey {
    SecretKey::from_seed(&[0x71; 32])
}

fn web_test_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web/test")
}

/// Runs the Playwright driver on a scenario and returns its JSON report.
fn drive(scenario: Value) -> Value {
    let dir = web_test_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "web/test/node_modules is missing: run `scripts/test.sh` or `(cd web/test && npm ci)`"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), scenario.to_string()).unwrap();
    let out = assert_cmd::Command::new("node")
        .arg(dir.join("drive.mjs"))
        .arg(file.path())
        .timeout(Duration::from_secs(120))
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "driver failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("driver prints JSON")
}

fn article(dir: &Path, name: &str, language: &str, title: &str, body: &str) -> PathBuf {
    let src = dir.join(format!("src-{name}"));
    fs::create_dir_all(src.join("images")).unwrap();
    fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: {title}\nauthor: Test Desk\ndate: 2026-03-01\nlanguage: {language}\n---\n\n\
             # {title}\n\n{body}\n\n![a pixel](images/pixel.png)\n\n- first point\n- second point\n"
        ),
    )
    .unwrap();
    fs::write(src.join("images/pixel.png"), PIXEL).unwrap();
    src
}

fn make(dir: &Path, src: &Path, name: &str) -> CreatedBundle {
    bundle::create(
        src,
        &key(),
        &dir.join(format!("{name}.zip")),
        &CreateOptions {
            name: Some(name.to_owned()),
            version: Some(1),
            limits: BundleLimits::default(),
        },
    )
    .unwrap()
}

/// A repo at sequence 2 (alpha, then the Urdu article), a copy at sequence 1, and hostile
/// copies: a forged alpha bundle, and a re-spaced index.json.
struct Repos {
    dir: TempDir,
    repo: PathBuf,
    old: PathBuf,
    forged: PathBuf,
    respaced: PathBuf,
    alpha: CreatedBundle,
}

fn repos() -> Repos {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let repo = d.join("repo");
    let alpha_src = article(
        d,
        "alpha",
        "en",
        "Alpha report",
        "The alpha body text is verified.",
    );
    let alpha = make(d, &alpha_src, "alpha");
    publish(&repo, &key(), &[alpha.path()]);
    let old = d.join("old");
    copy_tree(&repo, &old);
    let urdu_src = article(d, "urdu", "ur", "آزمائشی خبر", "یہ ایک آزمائشی مضمون ہے۔");
    let urdu = make(d, &urdu_src, "urdu");
    publish(&repo, &key(), &[urdu.path()]);
    let forged = d.join("forged");
    copy_tree(&repo, &forged);
    tamper(&bundle_path(&forged, &key(), &alpha));
    let respaced = d.join("respaced");
    copy_tree(&repo, &respaced);
    let index = index_path(&respaced, &key());
    let text = fs::read_to_string(&index).unwrap();
    fs::write(&index, text.replacen("{\"format\"", "{ \"format\"", 1)).unwrap();
    Repos {
        dir,
        repo,
        old,
        forged,
        respaced,
        alpha,
    }
}

/// A static mirror over a folder that sends CORS headers, one request per connection. It
/// serves single byte ranges (`Range: bytes=A-B`, answered 206) and CORS preflights, counts the
/// body bytes it sends, and when `corrupt` is set flips that byte of every 256 KiB chunk of
/// every bundle it serves.
struct CorsDir {
    url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl CorsDir {
    fn start(root: &Path) -> Self {
        Self::serving(root, None)
    }

    fn serving(root: &Path, corrupt: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (root, stop2, sent2) = (root.to_owned(), stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let (root, sent) = (root.clone(), sent2.clone());
                    std::thread::spawn(move || serve_file(conn, &root, corrupt, &sent));
                }
            }
        });
        Self {
            url: format!("http://{addr}/"),
            addr,
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Body bytes sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Drop for CorsDir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_file(mut conn: TcpStream, root: &Path, corrupt: Option<u64>, sent: &AtomicU64) {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut range: Option<(u64, u64)> = None;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
        let lower = header.trim().to_ascii_lowercase();
        if let Some(spec) = lower.strip_prefix("range: bytes=") {
            if let Some((a, b)) = spec.split_once('-') {
                range = a.parse().ok().zip(b.parse().ok());
            }
        }
    }
    let cors = "Access-Control-Allow-Origin: *\r\nConnection: close\r\n";
    if line.starts_with("OPTIONS ") {
        let _ = conn.write_all(
            format!(
                "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Methods: GET, HEAD\r\n\
                 Access-Control-Allow-Headers: Range, If-None-Match\r\n{cors}\r\n"
            )
            .as_bytes(),
        );
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let rel = path.trim_start_matches('/');
    let body = if rel.split('/').any(|p| p == ".." || p.starts_with('.')) {
        None
    } else {
        fs::read(root.join(rel)).ok()
    };
    let _ = match body {
        Some(mut body) => {
            if let (Some(at), true) = (corrupt, rel.contains("/bundles/")) {
                for b in body.iter_mut().skip(at as usize).step_by(256 << 10) {
                    *b ^= 0x55;
                }
            }
            let (status, extra, part) = match range {
                Some((a, b)) if a <= b && (b as usize) < body.len() => (
                    "206 Partial Content",
                    format!("Content-Range: bytes {a}-{b}/{}\r\n", body.len()),
                    &body[a as usize..=b as usize],
                ),
                _ => ("200 OK", String::new(), &body[..]),
            };
            sent.fetch_add(part.len() as u64, Ordering::SeqCst);
            conn.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}{cors}\r\n",
                    part.len()
                )
                .as_bytes(),
            )
            .and_then(|_| conn.write_all(part))
        }
        None => conn.write_all(
            format!("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n{cors}\r\n").as_bytes(),
        ),
    };
}

/// Writes the page with `qasid reader-page`, checks the printed sha256, returns its file URL.
fn page(dir: &Path, name: &str, mirrors: &[&str]) -> String {
    let out = dir.join(format!("{name}.html"));
    let pubkey = key().public().to_base64();
    let mut cmd = crate::reader_support::qasid();
    cmd.args(["reader-page", "--publisher", &pubkey, "--out"])
        .arg(&out);
    for m in mirrors {
        cmd.args(["--mirror", m]);
    }
    let result = cmd.output().unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8(result.stdout).unwrap();
    let html = fs::read(&out).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&html));
    assert!(stdout.contains(&format!("sha256 {sha}")), "{stdout}");
    format!("file://{}", out.display())
}

fn snapshot<'a>(report: &'a Value, name: &str) -> &'a Value {
    &report["snapshots"][name]
}

fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn report_for(snap: &Value, mirror: &str) -> String {
    texts(&snap["mirrors"])
        .into_iter()
        .find(|l| l.starts_with(mirror))
        .unwrap_or_else(|| panic!("no report line for {mirror}: {snap}"))
}

/// Every request went to one of `allowed` or stayed inside the browser (file:, blob:).
fn only_requests_to(report: &Value, allowed: &[&str]) {
    for url in texts(&report["requests"]) {
        assert!(
            url.starts_with("file:")
                || url.starts_with("blob:")
                || allowed.iter().any(|a| url.starts_with(a)),
            "the page requested {url}, which is not one of its mirrors {allowed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_verifies_an_article_from_whichever_mirror_answers_and_names_every_liar() {
    let r = repos();
    let store = r.dir.path().join("store");
    let server = mirror_support::Server::start(&store, &[&key()]).await;
    mirror_support::push_repo(&server, &r.repo, &key()).await;
    let qasid_mirror = format!("{}/", server.base);
    let nginx = Nginx::start(&r.repo);
    let tarpit = Tarpit::start();
    let forged = CorsDir::start(&r.forged);
    let replay = CorsDir::start(&r.old);
    let respaced = CorsDir::start(&r.respaced);
    let mirrors = [
        tarpit.url.as_str(),
        replay.url.as_str(),
        respaced.url.as_str(),
        forged.url.as_str(),
        qasid_mirror.as_str(),
        &nginx.base(),
    ]
    .map(str::to_owned);
    let mirror_refs: Vec<&str> = mirrors.iter().map(String::as_str).collect();
    let url = page(r.dir.path(), "all", &mirror_refs);
    let report = tokio::task::spawn_blocking(move || {
        drive(json!({
            "timeoutMs": 60000,
            "steps": [
                {"goto": format!("{url}#read=alpha")},
                {"snapshot": "alpha"},
                {"goto": format!("{url}#read=urdu")},
                {"snapshot": "urdu"},
            ]
        }))
    })
    .await
    .unwrap();
    let alpha = snapshot(&report, "alpha");
    assert_eq!(alpha["statusClass"], "good", "{alpha}");
    let badge = alpha["badge"].as_str().unwrap();
    assert!(badge.contains("verified in this browser"), "{badge}");
    assert!(badge.contains(&key().public().id().to_string()), "{badge}");
    assert!(badge.contains("index sequence 2"), "{badge}");
    assert!(badge.contains(&r.alpha.sha256().to_string()), "{badge}");
    let served_by_forger = badge.contains(&forged.url);
    assert!(!served_by_forger, "the forged bundle was shown: {badge}");
    assert_eq!(alpha["title"], "Alpha report");
    let text = alpha["article"].as_str().unwrap();
    assert!(text.contains("The alpha body text is verified."), "{text}");
    assert!(text.contains("second point"), "{text}");
    let images = alpha["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{alpha}");
    assert!(images[0]["src"].as_str().unwrap().starts_with("blob:"));
    assert_eq!(images[0]["width"], 1, "the verified PNG decoded");
    assert_eq!(alpha["save"], "alpha-v1.zip");
    // Each misbehaving mirror is named with what it did.
    assert!(
        report_for(alpha, &tarpit.url).contains("no answer"),
        "{alpha}"
    );
    assert!(
        report_for(alpha, &replay.url).contains("older than sequence 2"),
        "{alpha}"
    );
    let respaced_line = report_for(alpha, &respaced.url);
    assert!(
        respaced_line.contains("canonical encoding"),
        "{respaced_line}"
    );
    let all = report.to_string();
    assert!(
        !all.contains("EQUIVOCATION"),
        "a re-spaced index is not equivocation: {all}"
    );
    // If the forger was asked for the bundle, it is blamed; either way nothing of it was shown.
    for p in texts(&alpha["problems"]) {
        assert!(
            p.starts_with(&forged.url) && p.contains("lied"),
            "unexpected problem {p}"
        );
    }
    let urdu = snapshot(&report, "urdu");
    assert_eq!(urdu["statusClass"], "good", "{urdu}");
    assert_eq!(urdu["articleDir"], "rtl");
    assert!(urdu["article"]
        .as_str()
        .unwrap()
        .contains("یہ ایک آزمائشی مضمون ہے۔"));
    only_requests_to(&report, &mirror_refs);
    server.stop().await;
}

#[test]
fn a_forged_bundle_is_refused_and_nothing_of_it_is_shown() {
    let r = repos();
    let forged = CorsDir::start(&r.forged);
    let url = page(r.dir.path(), "forged", &[&forged.url]);
    let report =
        drive(json!({"steps": [{"goto": format!("{url}#read=alpha")}, {"snapshot": "s"}]}));
    let s = snapshot(&report, "s");
    assert_eq!(s["statusClass"], "bad", "{s}");
    assert!(
        s["status"].as_str().unwrap().contains("Could not verify"),
        "{s}"
    );
    assert_eq!(s["badge"], Value::Null, "{s}");
    assert_eq!(s["article"], Value::Null, "{s}");
    assert!(
        !s["viewText"].as_str().unwrap().contains("alpha body"),
        "{s}"
    );
    let problems = texts(&s["problems"]).join("\n");
    assert!(
        problems.contains(&forged.url) && problems.contains("lied"),
        "{problems}"
    );
    assert!(problems.contains("sha256"), "{problems}");
}

#[test]
fn a_replayed_index_and_a_respaced_index_are_refused_after_a_newer_one() {
    let r = repos();
    let good = CorsDir::start(&r.repo);
    let replay = CorsDir::start(&r.old);
    let respaced = CorsDir::start(&r.respaced);
    let first = page(r.dir.path(), "good", &[&good.url]);
    let second = page(r.dir.path(), "hostile", &[&replay.url, &respaced.url]);
    let report = drive(json!({"steps": [
        {"goto": first}, {"snapshot": "first"},
        {"goto": second}, {"snapshot": "second"},
    ]}));
    assert_eq!(snapshot(&report, "first")["statusClass"], "good");
    let s = snapshot(&report, "second");
    assert_eq!(s["statusClass"], "bad", "{s}");
    assert!(texts(&s["articles"]).is_empty(), "{s}");
    assert!(
        report_for(s, &replay.url).contains("sequence 1 is older than sequence 2"),
        "{s}"
    );
    assert!(
        report_for(s, &respaced.url).contains("canonical encoding"),
        "{s}"
    );
    assert!(!report.to_string().contains("EQUIVOCATION"));
}

#[test]
fn a_usb_copy_and_a_single_bundle_read_offline() {
    let r = repos();
    let nowhere = crate::reader_support::closed_port_url();
    let url = page(r.dir.path(), "offline", &[&nowhere]);
    let bundle = r.alpha.path().to_owned();
    let forged_zip = r.dir.path().join("forged.zip");
    fs::copy(&bundle, &forged_zip).unwrap();
    tamper(&forged_zip);
    let report = drive(json!({"steps": [
        {"goto": url},
        {"snapshot": "blocked"},
        {"setFiles": {"selector": "#open-folder", "path": r.repo}},
        {"snapshot": "folder"},
        {"evaluate": "location.hash = '#read=alpha'", "name": "nav"},
        {"settle": true},
        {"snapshot": "read"},
        {"setFiles": {"selector": "#open-bundle", "path": bundle}},
        {"snapshot": "zip"},
        {"setFiles": {"selector": "#open-bundle", "path": forged_zip}},
        {"snapshot": "forged"},
    ]}));
    assert_eq!(snapshot(&report, "blocked")["statusClass"], "bad");
    let folder = snapshot(&report, "folder");
    assert_eq!(texts(&folder["articles"]).len(), 2, "{folder}");
    let read = snapshot(&report, "read");
    assert_eq!(read["statusClass"], "good", "{read}");
    assert!(
        read["badge"].as_str().unwrap().contains("served by folder"),
        "{read}"
    );
    assert!(read["article"].as_str().unwrap().contains("alpha body"));
    let zip = snapshot(&report, "zip");
    assert!(
        zip["badge"]
            .as_str()
            .unwrap()
            .contains("offline copy alpha.zip"),
        "{zip}"
    );
    assert_eq!(zip["images"][0]["width"], 1);
    let forged = snapshot(&report, "forged");
    assert_eq!(forged["statusClass"], "bad", "{forged}");
    assert_eq!(forged["article"], Value::Null, "{forged}");
    only_requests_to(&report, &[&nowhere]);
}

#[test]
fn without_ed25519_the_page_says_so_and_shows_nothing() {
    let r = repos();
    let good = CorsDir::start(&r.repo);
    let url = page(r.dir.path(), "old-browser", &[&good.url]);
    // Makes this Chromium behave like a browser without WebCrypto Ed25519.
    let init = "const real = crypto.subtle.importKey.bind(crypto.subtle);\
        crypto.subtle.importKey = (f, k, alg, ...rest) => \
        (alg && (alg === 'Ed25519' || alg.name === 'Ed25519')) ? Promise.reject(new DOMException('no', 'NotSupportedError')) : real(f, k, alg, ...rest);";
    let report = drive(
        json!({"initScript": init, "steps": [{"goto": format!("{url}#read=alpha")}, {"snapshot": "s"}]}),
    );
    let s = snapshot(&report, "s");
    assert!(
        s["status"]
            .as_str()
            .unwrap()
            .contains("cannot check Ed25519"),
        "{s}"
    );
    assert_eq!(s["article"], Value::Null);
    assert!(texts(&s["articles"]).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qasid_mirror_serves_the_page_and_cors_headers() {
    let r = repos();
    let store = r.dir.path().join("store");
    let server = mirror_support::Server::start(&store, &[&key()]).await;
    mirror_support::push_repo(&server, &r.repo, &key()).await;
    let client = mirror_support::client();
    let index = mirror_support::url_path(&key(), |l| l.index());
    let answer = client
        .get(server.url(&index))
        .header("Origin", "null")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["access-control-allow-origin"], "*");
    let etag = answer.headers()["etag"].to_str().unwrap().to_owned();
    let not_modified = client
        .get(server.url(&index))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["access-control-allow-origin"], "*");
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url(&index))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "GET, HEAD"
    );
    let page = client.get(server.url("/reader.html")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(&key().public().to_base64()),
        "the page pins the mirror's publishers"
    );
    let url = server.url("/reader.html#read=alpha");
    let report = tokio::task::spawn_blocking(move || {
        drive(json!({"steps": [{"goto": url}, {"snapshot": "s"}]}))
    })
    .await
    .unwrap();
    let s = snapshot(&report, "s");
    assert_eq!(s["statusClass"], "good", "{s}");
    assert!(s["badge"].as_str().unwrap().contains(&server.base), "{s}");
    server.stop().await;
}

#[test]
fn reader_page_refuses_a_mirror_it_cannot_read_and_a_missing_publisher() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("p.html");
    let pubkey = key().public().to_base64();
    let bad = crate::reader_support::qasid()
        .args([
            "reader-page",
            "--publisher",
            &pubkey,
            "--mirror",
            "ftp://x/",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("http:// or https://"));
    let none = crate::reader_support::qasid()
        .args(["reader-page", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(!out.exists(), "nothing is written on failure");
}

/// The page's verifier code (the same files `qasid reader-page` embeds) run in Chromium against
/// the shared vectors in tests/vectors/: every case must reach the conclusion expect.json (or
/// the vector's README) gives, exactly as the Rust verifier does.
#[test]
fn the_page_code_reaches_the_shared_vectors_conclusions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vectors = root.join("tests/vectors");
    let b64 = |p: &Path| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(fs::read(p).unwrap())
    };
    let pubkey = |dir: &Path| {
        fs::read_to_string(dir.join("publisher.pub"))
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    let mut cases = Vec::new();
    let index_dir = vectors.join("index-v1");
    let expect: Value =
        serde_json::from_str(&fs::read_to_string(index_dir.join("expect.json")).unwrap()).unwrap();
    for case in expect["cases"].as_array().unwrap() {
        let mut case = case.clone();
        case["bytes"] = json!(b64(&index_dir.join(case["file"].as_str().unwrap())));
        case["publisher"] = json!(pubkey(&index_dir));
        cases.push(case);
    }
    let bundle_dir = vectors.join("bundle-v1");
    cases.push(json!({
        "kind": "bundle", "file": "bundle-v1/bundle.zip", "expect": "ok",
        "bytes": b64(&bundle_dir.join("bundle.zip")), "publisher": pubkey(&bundle_dir),
    }));
    let note_dir = vectors.join("note-v1");
    let notes: Value =
        serde_json::from_str(&fs::read_to_string(note_dir.join("expect.json")).unwrap()).unwrap();
    for (file, outcome) in notes["notes"].as_object().unwrap() {
        let expect = match outcome["valid"].as_bool().unwrap() {
            true => "ok".to_owned(),
            false => outcome["error"].as_str().unwrap().to_owned(),
        };
        cases.push(json!({
            "kind": "note", "file": format!("note-v1/{file}"), "expect": expect,
            "text": fs::read_to_string(note_dir.join(file)).unwrap(),
            "publisher": notes["publisher"], "now": notes["now"], "outcome": outcome,
        }));
    }
    let root_dir = vectors.join("root-v1");
    let roots: Value =
        serde_json::from_str(&fs::read_to_string(root_dir.join("expect.json")).unwrap()).unwrap();
    let keys: serde_json::Map<String, Value> = roots["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, k)| (name.clone(), k["public"].clone()))
        .collect();
    for case in roots["cases"].as_array().unwrap() {
        let files: Vec<String> = case["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| b64(&root_dir.join(f.as_str().unwrap())))
            .collect();
        let expect = match case["expect"].as_str().unwrap() {
            "ok" => "ok".to_owned(),
            _ => case["error"].as_str().unwrap().to_owned(),
        };
        cases.push(json!({
            "kind": "root", "file": format!("root-v1/{}", case["name"].as_str().unwrap()),
            "expect": expect, "roots": files, "check": case["check"], "result": case["result"],
            "keys": keys, "publisher": roots["publisher"], "now": roots["now"],
        }));
    }
    // Chunk lists: the index and pieces as in index-v1; a chunks case checks the entry's
    // reference, parses the list for the bundle and checks every chunk (files shared by name).
    let chunks_dir = vectors.join("chunks-v1");
    let chunk_cases: Value =
        serde_json::from_str(&fs::read_to_string(chunks_dir.join("expect.json")).unwrap()).unwrap();
    let mut files = serde_json::Map::new();
    for case in chunk_cases["cases"].as_array().unwrap() {
        let mut case = case.clone();
        let file = case["file"].as_str().unwrap().to_owned();
        case["publisher"] = json!(pubkey(&chunks_dir));
        if case["kind"] == "chunks" {
            let bundle = case["bundle_file"].as_str().unwrap().to_owned();
            files.insert(bundle.clone(), json!(b64(&chunks_dir.join(&bundle))));
            case["list"] = json!(b64(&chunks_dir.join(&file)));
        } else {
            case["bytes"] = json!(b64(&chunks_dir.join(&file)));
        }
        case["file"] = json!(format!("chunks-v1/{file}"));
        cases.push(case);
    }
    assert!(cases.len() > 70, "the vectors are there");
    let scripts: String = ["bytes.js", "verify.js", "roots.js", "note.js", "zip.js"]
        .iter()
        .map(|f| fs::read_to_string(root.join("web/reader").join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let runner = r#"
      const b64bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
      (async () => {
        const results = [];
        for (const c of window.VECTORS) {
          let got;
          try {
            const publisher = await importPublisher(c.publisher);
            const bytes = c.bytes === undefined ? null : b64bytes(c.bytes);
            if (c.kind === "index") {
              const h = await verifyIndex(bytes, publisher);
              got = h.sequence === c.sequence && h.id === c.id && h.previous === c.previous && h.log.entries === c.entries ? "ok" : "wrong result";
            } else if (c.kind === "piece") {
              const p = parsePiece(bytes, publisher);
              // A case may give the piece's position and hash too; those must match.
              const same = c.first === undefined || (p.first === c.first && p.entries.length === c.count && (await sha256Hex(bytes)) === c.sha256);
              got = c.expect !== "ok" || same ? "ok" : "wrong result";
            } else if (c.kind === "note") {
              const n = await verifyNote(c.text, [publisher], c.now * 1000);
              const o = c.outcome;
              const same = n.keyId === o.publisher && n.sequence === BigInt(o.sequence) && n.expires === BigInt(o.expires)
                && JSON.stringify(n.mirrors.map((m) => [m.url, m.hint])) === JSON.stringify(o.mirrors.map((m) => [m.url, m.hint]));
              got = same ? "ok" : "wrong result";
            } else if (c.kind === "root") {
              const now = Date.parse(c.now);
              const chain = rootChain(c.publisher);
              for (const f of c.roots) await chain.offer(b64bytes(f));
              const name = {};
              for (const [k, line] of Object.entries(c.keys)) name[(await importPublisher(line)).hex] = k;
              if (c.check) chain.checkSigner((await importPublisher(c.keys[c.check.key])).hex, c.check.role, now);
              const current = chain.roots[chain.roots.length - 1];
              const signers = chain.signers(now);
              const named = Object.fromEntries(Object.entries(signers).map(([r, ks]) => [r, ks.map((k) => name[k.hex])]));
              const o = c.result;
              const same = current.version === o.version && current.id === o.root_sha256
                && JSON.stringify(named) === JSON.stringify(o.signers);
              got = same ? "ok" : "wrong result " + JSON.stringify({ version: current.version, id: current.id, named });
            } else if (c.kind === "chunks") {
              const bundle = b64bytes(window.FILES[c.bundle_file]);
              const list = b64bytes(c.list);
              checkChunksRef(c.entry.chunks, c.entry.bundle);
              const same = list.length === c.entry.chunks.size && (await sha256Hex(list)) === c.entry.chunks.sha256;
              const hashes = parseChunkList(list, c.entry.bundle);
              try {
                for (let i = 0; i < hashes.length; i++) {
                  await verifyChunk(i, bundle.subarray(i * CHUNKS.size, (i + 1) * CHUNKS.size), hashes, bundle.length);
                }
              } catch (e) {
                if (e.chunk && (e.chunk.index !== c.index || e.chunk.offset !== c.offset)) throw new Error("wrong chunk named " + JSON.stringify(e.chunk));
                throw e;
              }
              const last = bundle.length - (hashes.length - 1) * CHUNKS.size;
              got = same && hashes.length === c.count && last === c.last_chunk_bytes ? "ok" : "wrong result";
            } else if (c.kind === "bundle") {
              await readBundle(bytes, publisher);
              got = "ok";
            } else {
              got = "unknown kind " + c.kind;
            }
          } catch (e) {
            got = e instanceof QasidError ? e.code : "exception: " + e;
          }
          results.push({ file: c.file, expect: c.expect, got });
        }
        window.results = results;
        document.body.dataset.state = "idle";
      })();
    "#;
    let dir = TempDir::new().unwrap();
    let html = format!(
        "<!doctype html><meta charset=utf-8><body><script>window.VECTORS = {}; window.FILES = {};</script><script>\"use strict\";\n{scripts}\n{runner}</script>",
        serde_json::to_string(&cases).unwrap().replace('<', "\\u003c"),
        serde_json::to_string(&files).unwrap()
    );
    let page = dir.path().join("vectors.html");
    fs::write(&page, html).unwrap();
    let report = drive(json!({"steps": [
        {"goto": format!("file://{}", page.display())},
        {"evaluate": "window.results", "name": "results"},
    ]}));
    let results = report["snapshots"]["results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results.len(), cases.len(), "{report}");
    let wrong: Vec<&Value> = results.iter().filter(|r| r["expect"] != r["got"]).collect();
    assert!(
        wrong.is_empty(),
        "the page disagrees with the vectors: {wrong:#?}"
    );
}

fn note_uri(signer: &SecretKey, sequence: u64, urls: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    qasid::note::Note {
        publisher: signer.public().id(),
        sequence,
        expires: now + 3600,
        mirrors: urls
            .iter()
            .map(|u| qasid::note::NoteMirror::parse(u).unwrap())
            .collect(),
    }
    .sign(signer)
    .unwrap()
    .to_uri()
}

/// The page's only pinned mirror is a tarpit (blocked); the link a reader got in a chat app
/// carries a signed mirror note naming a fresh mirror: the page verifies the note with the
/// pinned key, asks the note's mirror and shows the verified article. A note signed by another
/// key and an older note are refused and their mirrors never asked.
#[test]
fn a_note_in_the_link_leads_past_a_blocked_mirror_and_a_forged_or_older_note_is_refused() {
    let r = repos();
    let tarpit = Tarpit::start();
    let fresh = CorsDir::start(&r.repo);
    let decoy = CorsDir::start(&r.repo);
    let url = page(r.dir.path(), "noted", &[tarpit.url.as_str()]);
    let good = note_uri(&key(), 20, &[&fresh.url]);
    let older = note_uri(&key(), 10, &[&decoy.url]);
    let forged = note_uri(&SecretKey::from_seed(&[0x72; 32]), 30, &[&decoy.url]);
    // The forged note names another key id; re-signing a copy that claims ours needs our key,
    // so the forger's only choice is a note our key does not verify.
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [
            {"goto": format!("{url}#{forged}&read=alpha")},
            {"snapshot": "forged"},
            {"goto": format!("{url}#{good}&read=alpha")},
            {"snapshot": "good"},
            // The older note, in the same tab (a new tab may read localStorage before another
            // tab's write reaches it: Chromium's storage is only eventually shared).
            {"goto": format!("{url}#read=alpha&{older}")},
            {"snapshot": "older"},
        ]
    }));
    let forged_snap = snapshot(&report, "forged");
    let problems = texts(&forged_snap["problems"]).join("\n");
    assert!(
        problems.contains("mirror note") && problems.contains("does not trust"),
        "{forged_snap}"
    );
    assert_ne!(forged_snap["statusClass"], "good", "{forged_snap}");
    let good_snap = snapshot(&report, "good");
    assert_eq!(good_snap["statusClass"], "good", "{good_snap}");
    assert_eq!(good_snap["title"], "Alpha report");
    let badge = good_snap["badge"].as_str().unwrap();
    assert!(
        badge.contains(&format!("served by {}", fresh.url)),
        "{badge}"
    );
    // The page remembers the note's sequence: the older note is refused as a rollback, and the
    // mirror it names is never asked (the article still opens through what was learned).
    let older_snap = snapshot(&report, "older");
    let problems = texts(&older_snap["problems"]).join("\n");
    assert!(problems.contains("rollback"), "{older_snap}");
    for req in texts(&report["requests"]) {
        assert!(
            !req.starts_with(&decoy.url),
            "the page asked {req}, named only by a refused note"
        );
    }
    only_requests_to(&report, &[&tarpit.url, &fresh.url, &decoy.url]);
}

/// A newsroom with a threshold root (2 of 3 editors, signing key S; PROTOCOL.md section 11):
/// the page pinned with `--publisher root.json` verifies what S signs; after S is seized and two
/// editors publish root 2 revoking it (delegating S2), the same page file follows the chain from
/// a mirror without any action, shows the re-signed article, and refuses the thief's mirror,
/// whose newer index and bundle S signed.
#[test]
fn the_page_follows_a_root_rotation_and_refuses_what_the_revoked_key_signs() {
    use crate::roots::{article, bundle, newsroom, ok, rotate};
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    let out = dir.join("rooted.html");
    let honest = CorsDir::start(&dir.join("repo"));
    let page_url = format!("file://{}", out.display());
    // The page carries root 1 (the id is derived from it: no key of its own); alpha v1 by S.
    ok(
        dir,
        &[
            "reader-page",
            "--publisher",
            "root.json",
            "--mirror",
            &honest.url,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    // The thief copies the repo and signs a newer index and bundle with the seized S.
    std::process::Command::new("cp")
        .args(["-a", "repo", "thief"])
        .current_dir(dir)
        .status()
        .unwrap();
    article(dir, "evil", "Evil");
    bundle(dir, "evil", "S/publisher.key", "evil", "1", "evil-1.zip");
    ok(
        dir,
        &[
            "publish",
            "evil-1.zip",
            "--repo",
            "thief",
            "--key",
            "S/publisher.key",
        ],
    );
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [
            {"goto": format!("{page_url}#read=alpha")},
            {"snapshot": "before-rotation"},
        ]
    }));
    let first = snapshot(&report, "before-rotation");
    assert_eq!(first["statusClass"], "good", "{first}");
    assert_eq!(first["title"], "Alpha");

    // Two editors revoke S and delegate S2; alpha is re-signed with S2 and published.
    rotate(
        dir,
        "root-2.json",
        &[
            "--revoke",
            "S/publisher.pub",
            "--signing-key",
            "S2/publisher.pub",
        ],
        &["A", "C"],
    );
    bundle(
        dir,
        "alpha",
        "S2/publisher.key",
        "alpha",
        "2",
        "alpha-2.zip",
    );
    ok(
        dir,
        &[
            "publish",
            "alpha-2.zip",
            "--repo",
            "repo",
            "--key",
            "S2/publisher.key",
        ],
    );
    let thief = CorsDir::start(&dir.join("thief"));
    ok(
        dir,
        &[
            "reader-page",
            "--publisher",
            "root.json",
            "--mirror",
            &honest.url,
            "--mirror",
            &thief.url,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [
            {"goto": format!("{page_url}#read=alpha")},
            {"snapshot": "rotated"},
            {"goto": format!("{page_url}?again#read=evil")},
            {"snapshot": "evil"},
        ]
    }));
    let rotated = snapshot(&report, "rotated");
    assert_eq!(rotated["statusClass"], "good", "{rotated}");
    assert_eq!(rotated["save"], "alpha-v2.zip", "{rotated}");
    assert!(
        rotated["badge"].as_str().unwrap().contains(&honest.url),
        "{rotated}"
    );
    let thief_line = report_for(rotated, &thief.url);
    assert!(
        thief_line.contains("does not verify"),
        "the thief's index, signed by the revoked key: {thief_line}"
    );
    let evil = snapshot(&report, "evil");
    assert!(
        evil["article"].is_null(),
        "nothing of the thief's is shown: {evil}"
    );
    assert!(
        texts(&evil["problems"])
            .iter()
            .any(|p| p.contains("No verified index lists an article named \"evil\"")),
        "{evil}"
    );
    only_requests_to(&report, &[&honest.url, &thief.url]);
}

/// A browser that holds root 2 asks every mirror for root 2 again: a mirror serving a different
/// validly signed root 2 (a coerced majority's fork) is named, even when it offers no root 3.
#[test]
fn the_page_re_asks_the_root_it_holds_and_names_a_fork() {
    use crate::roots::{newsroom, ok, rotate, rotate_in};
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
    newsroom(dir);
    std::process::Command::new("cp")
        .args(["-a", "repo", "fork"])
        .current_dir(dir)
        .status()
        .unwrap();
    // The newsroom's root 2 (editors A, B); the fork's root 2 (coerced B, C), another key.
    rotate(
        dir,
        "r2.json",
        &["--signing-key", "S2/publisher.pub"],
        &["A", "B"],
    );
    rotate_in(
        dir,
        "fork",
        "f2.json",
        &["--signing-key", "T/publisher.pub"],
        &["B", "C"],
    );
    let honest = CorsDir::start(&dir.join("repo"));
    let forker = CorsDir::start(&dir.join("fork"));
    let (first, second) = (dir.join("first.html"), dir.join("second.html"));
    for (out, mirror) in [(&first, &honest.url), (&second, &forker.url)] {
        ok(
            dir,
            &[
                "reader-page",
                "--publisher",
                "root.json",
                "--mirror",
                mirror,
                "--out",
                out.to_str().unwrap(),
            ],
        );
    }
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [
            {"goto": format!("file://{}#read=alpha", first.display())},
            {"snapshot": "holds-root-2"},
            {"goto": format!("file://{}#read=alpha", second.display())},
            {"snapshot": "forked"},
        ]
    }));
    let held = snapshot(&report, "holds-root-2");
    assert_eq!(held["statusClass"], "good", "{held}");
    let forked = snapshot(&report, "forked");
    assert!(
        texts(&forked["problems"])
            .iter()
            .any(|p| p.contains(&forker.url) && p.contains("EQUIVOCATION")),
        "the fork of root 2 is named: {forked}"
    );
    assert!(
        forked["article"].is_null(),
        "nothing the forking mirror serves is shown: {forked}"
    );
}

/// A bundle above the chunk threshold (PROTOCOL.md section 13) comes in verified chunks from
/// every mirror at once; a mirror that sends one bad chunk is named with that chunk and its
/// offset, the chunk comes from another mirror, and the article is shown, verified.
#[test]
fn the_page_downloads_a_large_bundle_in_chunks_from_every_mirror_and_names_a_bad_chunks_sender() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    let src = article(d, "big", "en", "Big report", "A large article.");
    // 3 MiB that do not compress: a bundle of twelve chunks.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(src.join("images/noise.bin"), &noise).unwrap();
    let big = make(d, &src, "big");
    let repo = d.join("repo");
    publish(&repo, &key(), &[big.path()]);
    let size = fs::metadata(big.path()).unwrap().len();
    let chunk: u64 = 256 << 10;
    let (a, b) = (CorsDir::start(&repo), CorsDir::start(&repo));
    let liar = CorsDir::serving(&repo, Some(100));
    let url = page(d, "chunked", &[&a.url, &b.url, &liar.url]);
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [{"goto": format!("{url}#read=big")}, {"snapshot": "big"}]
    }));
    let snap = snapshot(&report, "big");
    assert_eq!(snap["statusClass"], "good", "{snap}");
    assert_eq!(snap["title"], "Big report");
    let badge = snap["badge"].as_str().unwrap();
    let honest_shares = [&a.url, &b.url]
        .iter()
        .filter(|u| badge.contains(&format!("{u} (")))
        .count();
    assert_eq!(honest_shares, 2, "both honest mirrors sent chunks: {badge}");
    // The liar's first chunk is bad (every one is): named with its index and offset, once.
    let named: Vec<String> = texts(&snap["problems"])
        .into_iter()
        .filter(|p| p.contains(&liar.url))
        .collect();
    assert_eq!(named.len(), 1, "{snap}");
    let index: u64 = named[0]
        .split("wrong chunk ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk named: {}", named[0]));
    let end = (index * chunk + chunk).min(size);
    assert!(
        named[0].contains(&format!("(bytes {}..{end})", index * chunk)),
        "{}",
        named[0]
    );
    assert!(
        !badge.contains(&liar.url),
        "nothing of the liar's is used: {badge}"
    );
    // On the wire: the bundle, the liar's bad chunks (one per connection it had open), doubled
    // late chunks (at most a tenth of the bundle), and the small objects (index, piece, list).
    let sent = a.sent() + b.sent() + liar.sent();
    assert!(
        sent <= size + size / 10 + 2 * chunk + (64 << 10),
        "{sent} bytes sent for a bundle of {size}"
    );
}

/// The page reads a repo straight from a bucket (Garage's website endpoint, with the CORS rule
/// docs/OBJECT-STORAGE.md gives): pushed with `push --to s3://`, verified in the browser.
#[test]
fn the_page_reads_a_repo_from_a_bucket_website_endpoint() {
    let tmp = TempDir::new().unwrap();
    let d = tmp.path();
    let src = article(d, "alpha", "en", "Alpha report", "Read from a bucket.");
    let alpha = make(d, &src, "alpha");
    let repo = d.join("repo");
    publish(&repo, &key(), &[alpha.path()]);
    // A cluster of its own: the website alias `localhost` is global to a cluster.
    let cluster = crate::garage_support::Cluster::private();
    let bucket = cluster.bucket("page");
    crate::buckets::push(&repo, &bucket.url("site"), &bucket.env);
    bucket.alias("localhost");
    bucket.cors();
    let port = cluster.web_url(2);
    let port = port.trim_end_matches('/').rsplit(':').next().unwrap();
    let mirror = format!("http://localhost:{port}/site/");
    let url = page(d, "bucket", &[&mirror]);
    let report = drive(json!({
        "timeoutMs": 60000,
        "steps": [{"goto": format!("{url}#read=alpha")}, {"snapshot": "bucket"}]
    }));
    let snap = snapshot(&report, "bucket");
    assert_eq!(snap["statusClass"], "good", "{snap}");
    assert_eq!(snap["title"], "Alpha report");
    assert!(snap["badge"].as_str().unwrap().contains(&mirror), "{snap}");
    only_requests_to(&report, &[&mirror]);
}
