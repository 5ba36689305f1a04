//! Hostile mirrors and hostile local setups against the reader (issue 12), through the real
//! binary and real peers on loopback: FIFOs in folder mirrors, pieces that stall, publishers
//! carried by one slow mirror, learned mirrors and proxies, huge or HTML answers, a dead proxy.
//! Each test is named after the attack and ends in bounded time.

use crate::reader_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reader_support::*;
use tempfile::TempDir;

/// A repo with `alpha` v1 (about 20 KB) published: (temp dir, repo root, bundle).
fn repo_with_alpha() -> (TempDir, PathBuf, qasid::bundle::CreatedBundle) {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 20_000);
    publish(&root, &key(), &[alpha.path()]);
    (dir, root, alpha)
}

/// Replaces `path` with a FIFO nobody ever writes to.
fn mkfifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

/// The index pieces of `key` in the repo at `root`.
fn pieces(root: &Path) -> Vec<PathBuf> {
    let layout = qasid::index::layout::PublisherLayout::new(key().public());
    let dir = qasid::index::layout::on_disk(root, &layout.pieces_dir());
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn mirrors(urls: &[&str]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["--mirror".to_owned(), u.to_string()])
        .collect()
}

/// `qasid fetch alpha` from `urls` with `extra` flags: (output, how long it took).
fn fetch_alpha(dir: &Path, urls: &[&str], extra: &[&str]) -> (std::process::Output, Duration) {
    let mut args = mirrors(urls);
    let out_dir = dir.join("out");
    args.extend(["alpha", "--json", "--out", out_dir.to_str().unwrap()].map(str::to_owned));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = fetch(&dir.join("state"), &args);
    (out, start.elapsed())
}

#[test]
fn a_fifo_in_place_of_index_json_in_a_folder_mirror_does_not_hang_fetch() {
    let (dir, root, _) = repo_with_alpha();
    let hostile = dir.path().join("usb");
    copy_tree(&root, &hostile);
    mkfifo(&index_path(&hostile, &key()));
    let file_url = format!("file://{}", hostile.display());
    let (out, took) = fetch_alpha(dir.path(), &[&file_url, root.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(fate(&doc, hostile.to_str().unwrap()), "failed");
    let report = doc.to_string();
    assert!(report.contains("not a regular file"), "{report}");
}

#[test]
fn a_fifo_in_place_of_an_index_piece_or_a_bundle_does_not_hang_fetch() {
    for target in ["piece", "bundle"] {
        let (dir, root, alpha) = repo_with_alpha();
        let hostile = dir.path().join("usb");
        copy_tree(&root, &hostile);
        if target == "piece" {
            for piece in pieces(&hostile) {
                mkfifo(&piece);
            }
        } else {
            mkfifo(&bundle_path(&hostile, &key(), &alpha));
        }
        let slow_good = TestMirror::start(
            &root,
            Behaviour {
                index_delay: Duration::from_millis(200),
                ..Behaviour::default()
            },
        );
        let (out, took) = fetch_alpha(
            dir.path(),
            &[hostile.to_str().unwrap(), &slow_good.url],
            &["--race-window", "1s"],
        );
        assert_eq!(code(&out), 0, "{target}: {}", stderr(&out));
        assert!(took < Duration::from_secs(10), "{target}: took {took:?}");
        let doc = json_of(&out);
        if target == "bundle" {
            assert_eq!(doc["article"]["mirror"], slow_good.url.as_str());
        }
    }
}

#[test]
fn a_fifo_in_place_of_index_json_does_not_hang_sync_once() {
    let (dir, root, _) = repo_with_alpha();
    mkfifo(&index_path(&root, &key()));
    let start = Instant::now();
    let out = qasid()
        .args(["sync", "--once", "--store"])
        .arg(dir.path().join("store"))
        .args(["--publisher", &key().public().to_base64()])
        .arg("--upstream")
        .arg(format!("file://{}", root.display()))
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not a regular file"), "{stdout}");
}

#[test]
fn a_fast_mirror_of_one_publisher_does_not_cut_the_slow_only_mirror_of_another() {
    let dir = TempDir::new().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 2_000);
    publish(&one, &key(), &[alpha.path()]);
    let beta = make_bundle(dir.path(), &other_key(), "beta", 1, 2_000);
    publish(&two, &other_key(), &[beta.path()]);
    let fast = TestMirror::start(&one, Behaviour::default());
    // Tor-like: every answer, 404s included, takes a second.
    let slow = TestMirror::start(
        &two,
        Behaviour {
            answer_delay: Duration::from_secs(1),
            ..Behaviour::default()
        },
    );
    let start = Instant::now();
    let out = qasid()
        .args([
            "fetch", "--json", "--mirror", &fast.url, "--mirror", &slow.url,
        ])
        .args(["--publisher", &key().public().to_base64()])
        .args(["--publisher", &other_key().public().to_base64()])
        .arg("--state")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let doc = json_of(&out);
    assert_eq!(doc["publishers"][0]["articles"][0]["name"], "alpha");
    assert_eq!(doc["publishers"][1]["articles"][0]["name"], "beta");
    assert_eq!(fate(&doc, &slow.url), "ok");
}

#[test]
fn a_mirror_that_answers_the_index_and_stalls_on_pieces_is_overtaken_and_reported() {
    let (dir, root, _) = repo_with_alpha();
    let staller = TestMirror::start(
        &root,
        Behaviour {
            stall_pieces: true,
            ..Behaviour::default()
        },
    );
    let good = TestMirror::start(
        &root,
        Behaviour {
            index_delay: Duration::from_millis(100),
            ..Behaviour::default()
        },
    );
    let (out, took) = fetch_alpha(
        dir.path(),
        &[&staller.url, &good.url],
        &["--hedge-delay", "300ms", "--timeout", "30s"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Without hedging, the stalled piece alone would hold the run for the 30 s read timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        staller
            .log
            .seen()
            .iter()
            .any(|s| s.path.contains("/pieces/")),
        "the staller was asked for the piece first"
    );
    let doc = json_of(&out);
    assert_eq!(doc["article"]["mirror"], good.url.as_str());
    assert_eq!(fate(&doc, &staller.url), "timed_out");
    let detail = doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mirror"] == staller.url.as_str())
        .unwrap()["detail"]
        .to_string();
    assert!(detail.contains("stalled on index piece"), "{detail}");
}

/// How many connections the proxy opened to `mirror`.
fn through(proxy: &Socks5, mirror: &TestMirror) -> usize {
    let addr = mirror.addr.to_string();
    proxy.targets().iter().filter(|t| **t == addr).count()
}

/// Mirrors of one repo whose signed index names the `learned` one.
struct ProxySetup {
    dir: TempDir,
    /// In the config with a recording SOCKS5 proxy of its own.
    via: TestMirror,
    learned: TestMirror,
    /// In the config without a proxy if `with_direct`.
    direct: TestMirror,
    proxy: Socks5,
    config: PathBuf,
}

fn learned_mirror_setup(config_extra: &str, with_direct: bool) -> ProxySetup {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("repo");
    let learned = TestMirror::start(&root, Behaviour::default());
    let alpha = make_bundle(dir.path(), &key(), "alpha", 1, 2_000);
    publish_at(
        &root,
        &key(),
        &[alpha.path()],
        Some(&[&learned.url]),
        std::time::SystemTime::now(),
        WEEK,
    );
    // The configured mirror stalls on bundles, so a download needs the learned mirror: which
    // of two healthy mirrors wins a race is not what these tests are about.
    let via = TestMirror::start(
        &root,
        Behaviour {
            stall_bundles: true,
            ..Behaviour::default()
        },
    );
    let direct_mirror = TestMirror::start(&root, Behaviour::default());
    let proxy = Socks5::start();
    let config = dir.path().join("reader.toml");
    let direct = match with_direct {
        true => format!(", \"{}\"", direct_mirror.url),
        false => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "[[publisher]]\nkey = \"{}\"\n\n[reader]\n{config_extra}mirrors = [{{ url = \"{}\", proxy = \"{}\" }}{direct}]\n",
            key().public().to_base64(),
            via.url,
            proxy.url,
        ),
    )
    .unwrap();
    ProxySetup {
        dir,
        via,
        learned,
        direct: direct_mirror,
        proxy,
        config,
    }
}

fn fetch_with_config(dir: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    qasid()
        .args(["fetch", "--json", "--config"])
        .arg(config)
        .arg("--state")
        .arg(dir.join("state"))
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_mirror_learned_from_the_index_is_not_contacted_around_a_per_mirror_proxy() {
    let ProxySetup {
        dir,
        via,
        learned,
        proxy,
        config,
        ..
    } = learned_mirror_setup("", false);
    // The first run learns the mirror from the signed index; the second one uses it.
    let out = fetch_with_config(dir.path(), &config, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out_dir = dir.path().join("out");
    let out = fetch_with_config(
        dir.path(),
        &config,
        &["alpha", "--out", out_dir.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fate(&json_of(&out), &learned.url), "ok");
    let seen = learned.log.seen().len();
    assert!(seen > 0, "the learned mirror was asked");
    assert_eq!(
        through(&proxy, &learned),
        seen,
        "every connection went through the proxy"
    );
    assert_eq!(through(&proxy, &via), via.log.seen().len());
}

#[test]
fn with_proxy_only_no_connection_leaves_except_through_the_proxy() {
    let ProxySetup {
        dir,
        via,
        learned,
        direct,
        proxy,
        config,
    } = learned_mirror_setup("proxy_only = true\n", true);
    let out_dir = dir.path().join("out");
    for _ in 0..2 {
        let out = fetch_with_config(
            dir.path(),
            &config,
            &["alpha", "--out", out_dir.to_str().unwrap()],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    for mirror in [&via, &learned, &direct] {
        let seen = mirror.log.seen().len();
        assert!(seen > 0, "{} was asked", mirror.url);
        assert_eq!(
            through(&proxy, mirror),
            seen,
            "{} was reached directly",
            mirror.url
        );
    }

    // --proxy-only without any proxy, or with one that resolves names locally: refused.
    let out = fetch(
        &dir.path().join("state2"),
        &["--mirror", &direct.url, "--proxy-only"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("no proxy"), "{}", stderr(&out));
    let leaky = proxy.url.replace("socks5h://", "socks5://");
    let out = fetch(
        &dir.path().join("state2"),
        &["--mirror", &direct.url, "--proxy-only", "--proxy", &leaky],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("socks5h"), "{}", stderr(&out));
    assert_eq!(
        through(&proxy, &direct),
        direct.log.seen().len(),
        "a refused run contacts nothing"
    );
}

/// A web server that answers every request with `status` and a body of `body_bytes` bytes of
/// HTML (without a length, so only the client decides when to stop); counts what it sent.
struct WebPage {
    url: String,
    addr: std::net::SocketAddr,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl WebPage {
    fn start(status: &'static str, body_bytes: u64) -> Self {
        use std::io::{BufRead as _, Write as _};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let sent = sent2.clone();
                std::thread::spawn(move || {
                    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n"
                    );
                    if conn.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let page =
                        b"<!DOCTYPE html><html><body>Please log in to the Wi-Fi</body></html>\n";
                    let mut chunk = page.to_vec();
                    chunk.resize(64 << 10, b' ');
                    let mut left = body_bytes;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        if conn.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        sent.fetch_add(n as u64, Ordering::SeqCst);
                        left -= n as u64;
                    }
                });
            }
        });
        Self {
            url: format!("http://{addr}/"),
            addr,
            sent,
            stop,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for WebPage {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn detail(doc: &serde_json::Value, mirror: &str) -> String {
    doc["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mirror"] == mirror)
        .unwrap()["detail"]
        .to_string()
}

#[test]
fn a_captive_portal_page_is_not_a_qasid_mirror_and_not_called_a_liar() {
    let dir = TempDir::new().unwrap();
    // A small page, and a 1 GiB one: both are a wrong URL, read no further than the index cap.
    for size in [2_000, 1 << 30] {
        let portal = WebPage::start("200 OK", size);
        let start = Instant::now();
        let out = fetch(
            &dir.path().join("state"),
            &["--mirror", &portal.url, "--json"],
        );
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let doc = json_of(&out);
        assert_eq!(fate(&doc, &portal.url), "failed", "{size}");
        let said = detail(&doc, &portal.url);
        assert!(said.contains("not a qasid mirror (an HTML page"), "{said}");
        assert!(
            portal.sent() < 16 << 20,
            "{} bytes were sent",
            portal.sent()
        );
    }

    // sync says it once, not twice.
    let portal = WebPage::start("200 OK", 2_000);
    let out = qasid()
        .args(["sync", "--once", "--store"])
        .arg(dir.path().join("store"))
        .args(["--publisher", &key().public().to_base64()])
        .args(["--upstream", &portal.url])
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("not a qasid mirror").count(), 1, "{stdout}");
}

#[test]
fn a_huge_error_body_is_never_read_and_the_status_is_reported() {
    let dir = TempDir::new().unwrap();
    let hostile = WebPage::start("500 Internal Server Error", 1 << 30);
    let start = Instant::now();
    let out = fetch(
        &dir.path().join("state"),
        &["--mirror", &hostile.url, "--json"],
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let said = detail(&json_of(&out), &hostile.url);
    assert!(said.contains("500"), "{said}");
    assert!(
        hostile.sent() < 16 << 20,
        "{} bytes were sent",
        hostile.sent()
    );

    let out = qasid()
        .args(["index", "show", "--repo", &hostile.url])
        .args(["--publisher", &key().public().to_base64(), "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("500"), "{}", stderr(&out));
    assert!(
        hostile.sent() < 32 << 20,
        "{} bytes were sent",
        hostile.sent()
    );
}

#[test]
fn index_show_says_why_a_request_failed_not_just_error_sending_request() {
    let dir = TempDir::new().unwrap();
    let out = qasid()
        .args(["index", "show", "--repo", &closed_port_url()])
        .args(["--publisher", &key().public().to_base64(), "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

/// A server on 127.0.0.1 that answers every request with a large `Content-Length` and then
/// one body byte every 200 ms (each well within any read timeout), for at most 60 s.
fn dripping_server() -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let started = Instant::now();
        listener.set_nonblocking(true).unwrap();
        let mut conns = Vec::new();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok((mut c, _)) = listener.accept() {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = c.read(&mut [0u8; 4096]);
                let ok = c
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n")
                    .is_ok();
                if ok {
                    conns.push(c);
                }
            }
            // A byte for each open connection; the ones the client closed drop out.
            conns.retain_mut(|c| c.write_all(b" ").is_ok());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    (url, handle)
}

/// The attack: a mirror answers `index show` at once and then drips the body a byte at a
/// time, each within the read timeout, holding the command forever. Now an answer must keep
/// up with 4 KiB/s after a 10 s grace: the command fails in bounded time, saying why.
#[test]
fn index_show_from_a_mirror_dripping_its_answer_ends_in_bounded_time() {
    let dir = TempDir::new().unwrap();
    let (url, _server) = dripping_server();
    let started = Instant::now();
    let out = qasid()
        .args(["index", "show", "--repo", &url])
        .args(["--publisher", &key().public().to_base64(), "--state"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let took = started.elapsed();
    eprintln!("index show against a dripping mirror ended after {took:?}");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("slower than 4 KiB/s"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(took < Duration::from_secs(35), "took {took:?}");
}
