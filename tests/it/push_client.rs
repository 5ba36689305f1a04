//! `qasid push` against servers that are not honest qasid mirrors: a web server that answers
//! 200 with HTML to everything, one that says "stored" but keeps nothing, one with an endless
//! error page; and push progress on a slow link. Real servers on 127.0.0.1 port 0, the real
//! binary where the exit code and memory are what matters.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qasid::mirror::client::{self, Progress};

use crate::mirror_support::{key, make_bundle, publish, Server, WAIT};

/// What a stub server answers: `(method, path) -> raw response head`, or `None` for an
/// endless `500` body.
type Answer = fn(&str, &str) -> Option<String>;

/// A tiny HTTP/1.1 server on its own threads: answers every request with `answer`, closes
/// after each response. Stops accepting when dropped.
struct Stub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Stub {
    fn start(answer: Answer) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || serve_one(stream, answer));
            }
        });
        Stub { addr, stop }
    }

    fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_one(stream: TcpStream, answer: Answer) {
    let _ = stream.set_read_timeout(Some(WAIT));
    let _ = stream.set_write_timeout(Some(WAIT));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut stream = stream;
    match answer(method, path) {
        Some(head) => {
            // Take the body first, as a web server would, then answer.
            let _ = std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink());
            let _ = stream.write_all(head.as_bytes());
        }
        None => {
            // An error page that never ends: 64 KiB chunks until the client goes away (or
            // 4 GiB, which no bounded client reads).
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\n\
                  Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
            let mut chunk = b"10000\r\n".to_vec();
            chunk.resize(chunk.len() + 0x10000, b'x');
            chunk.extend_from_slice(b"\r\n");
            for _ in 0..(1 << 16) {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
    }
}

/// 200 with an HTML page, whatever was asked (a misconfigured web server, a captive portal).
fn html_to_everything(_: &str, _: &str) -> Option<String> {
    let page = "<!doctype html><html><body>Welcome to nginx!</body></html>";
    Some(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    ))
}

/// A server that claims `{"status":"stored"}` (as a mirror older than receipts would) but
/// keeps nothing: `HEAD` says 404.
fn stores_nothing(method: &str, _: &str) -> Option<String> {
    if method == "HEAD" {
        return Some(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        );
    }
    let body = "{\"status\":\"stored\"}\n";
    Some(format!(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// 404 to `HEAD` (so every object is sent), an endless error page to `PUT`.
fn endless_error_page(method: &str, _: &str) -> Option<String> {
    (method == "HEAD").then(|| {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
    })
}

/// A one-bundle repo; returns (temp dir, repo path).
fn repo(extra: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let k = key(1);
    let bundle = make_bundle(dir.path(), &k, "story", 1, extra);
    let repo = dir.path().join("repo");
    publish(&repo, &k, &[&bundle.path]);
    (dir, repo)
}

fn qasid_push(repo: &std::path::Path, to: &str) -> std::process::Output {
    assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args(["push", "--repo", repo.to_str().unwrap(), "--to", to])
        .timeout(WAIT)
        .output()
        .unwrap()
}

/// The bug: "ok, sent 9 objects" to a web server that answers 200 with HTML to every request.
#[test]
fn push_to_a_web_server_that_answers_200_html_is_not_a_delivery() {
    let (_dir, repo) = repo(1024);
    let stub = Stub::start(html_to_everything);
    let out = qasid_push(&repo, &stub.base());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("ok, sent"), "{stdout}");
    assert!(
        stdout.contains("not a qasid mirror") && stdout.contains("HTML page"),
        "{stdout}"
    );
}

/// A server that says "stored" (an old mirror's answer, without a receipt) is believed only if
/// the object is there afterwards.
#[test]
fn push_to_a_server_that_says_stored_but_keeps_nothing_fails() {
    let (_dir, repo) = repo(1024);
    let stub = Stub::start(stores_nothing);
    let out = qasid_push(&repo, &stub.base());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not a qasid mirror") && stdout.contains("does not serve the object"),
        "{stdout}"
    );
}

/// The bug: a 1 GiB error body took ~6.9 GB of memory. The answer is read up to its cap, so
/// the push ends quickly with a clear error and little memory.
#[test]
fn push_reads_an_endless_error_page_only_up_to_its_cap() {
    let (_dir, repo) = repo(1024);
    let stub = Stub::start(endless_error_page);
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let mut child = std::process::Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .arg(env!("CARGO_BIN_EXE_qasid"))
        .args([
            "push",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            &stub.base(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("push still reading the endless error page after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("500") && stdout.contains("not read"),
        "{stdout}"
    );
    let max_rss_kib: u64 = std::fs::read_to_string(rss_file.path())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!(
        "endless error page: push took {:?}, max RSS {} MiB",
        started.elapsed(),
        max_rss_kib >> 10
    );
    assert!(max_rss_kib < 100 << 10, "max RSS {max_rss_kib} KiB");
}

/// Records cumulative progress with the time of each call.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(Instant, u64)>>,
    total: Mutex<u64>,
}

impl Progress for Recorder {
    fn add_total(&self, bytes: u64) {
        *self.total.lock().unwrap() += bytes;
    }

    fn advance(&self, bytes: u64) {
        let mut seen = self.seen.lock().unwrap();
        let sum = seen.last().map_or(0, |s| s.1) + bytes;
        seen.push((Instant::now(), sum));
    }
}

/// A TCP relay to `to` that passes client bytes at about `rate` bytes a second.
fn slow_relay(to: SocketAddr, rate: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().take(64) {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; rate / 20];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// The bug: a 30 MB bundle on a slow link showed 346 B for 10 s, then done. Progress now moves
/// while a large object is being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_progress_moves_while_a_large_object_is_sent() {
    let (dir, repo) = repo(12 << 20);
    let k = key(1);
    let server = Server::start(&dir.path().join("store"), &[&k]).await;
    let relay = slow_relay(server.addr, 4 << 20);
    let recorder = Arc::new(Recorder::default());
    let plan = client::plan(&repo, k.public()).unwrap();
    let base: reqwest::Url = format!("http://{relay}/").parse().unwrap();
    let summary = tokio::time::timeout(
        WAIT,
        client::push(&qasid::index::http_client(), &base, &plan, recorder.clone()),
    )
    .await
    .expect("the push ends in time")
    .unwrap();
    let finished = Instant::now();
    assert_eq!(summary.sent, plan.objects());
    let total = *recorder.total.lock().unwrap();
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(
        seen.last().unwrap().1,
        total,
        "progress adds up to the total"
    );
    // Well before the push ended, the count stood somewhere inside the big bundle.
    let midway = seen
        .iter()
        .filter(|(at, sum)| {
            *sum > total / 8 && *sum < total * 7 / 8 && finished - *at > Duration::from_millis(300)
        })
        .count();
    assert!(
        midway > 4,
        "only {midway} progress updates inside the transfer ({} in all, total {total})",
        seen.len()
    );
}
