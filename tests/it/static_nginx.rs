//! The nginx server block documented in docs/PROTOCOL.md ("Serving a repository with a static
//! server"), run exactly as written: the test extracts it from the document between its
//! markers (so the document cannot drift from what was tested), changes only its `listen` and
//! `root` lines, and runs Debian's nginx on a loopback port in front of a published repo.
//!
//! Checks that `qasid index show` verifies the repo through it (the batch piece included, which
//! an up-to-date client fetches alone), that the private dot folders are refused however the
//! path is spelled, and the content types and caching headers the document promises.
//! Needs /usr/sbin/nginx (Debian `nginx-light`); without it the test fails, never skips.

use crate::mirror_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mirror_support::{key, make_bundle, publish, WAIT};
use qasid::index::layout::PublisherLayout;
use qasid::index::PieceRef;

const NGINX: &str = "/usr/sbin/nginx";
const BEGIN_MARKER: &str = "<!-- BEGIN nginx-server-block";
const END_MARKER: &str = "<!-- END nginx-server-block -->";
/// The lines of the documented block that a test (or an operator) replaces.
const DOC_LISTEN: &str = "    listen 80;\n";
const DOC_ROOT: &str = "    root /srv/qasid;\n";

/// The server block from docs/PROTOCOL.md, between its markers, without the code fence.
fn documented_server_block() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md"))
            .expect("docs/PROTOCOL.md");
    let start = doc.find(BEGIN_MARKER).expect("begin marker in PROTOCOL.md");
    let end = doc.find(END_MARKER).expect("end marker in PROTOCOL.md");
    let marked = &doc[start..end];
    let block = marked
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.rsplit_once("```"))
        .map(|(block, _)| block)
        .expect("an ```nginx fence between the markers");
    assert!(block.trim_start().starts_with("server {"), "{block}");
    block.to_owned()
}

/// Replaces `line`, which must appear exactly once in `block`.
fn replace_once(block: &str, line: &str, with: &str) -> String {
    assert_eq!(
        block.matches(line).count(),
        1,
        "{line:?} must appear exactly once in the documented block:\n{block}"
    );
    block.replace(line, with)
}

/// A private nginx (single process, foreground, everything under its own temp folder) serving
/// the documented block on a loopback port. Killed when dropped.
pub(crate) struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub(crate) fn start(root: &Path) -> Nginx {
        assert!(
            Path::new(NGINX).is_file(),
            "{NGINX} not found: this test runs the documented nginx configuration. Install \
             Debian's package: apt-get install -y --no-install-recommends nginx-light"
        );
        let block = documented_server_block();
        // A port taken between our probe and nginx's bind makes nginx exit; try another.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match Self::try_start(root, &block, addr) {
                Ok(nginx) => return nginx,
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("nginx did not start:\n{e}"),
            }
        }
        panic!("nginx found no free port:\n{last_error}");
    }

    fn try_start(root: &Path, block: &str, addr: SocketAddr) -> Result<Nginx, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path();
        let server = replace_once(block, DOC_LISTEN, &format!("    listen {addr};\n"));
        let server = replace_once(
            &server,
            DOC_ROOT,
            &format!("    root {};\n", root.display()),
        );
        let p = |name: &str| prefix.join(name).display().to_string();
        // Only the frame around the documented block is the test's: process handling, logs
        // and temp paths inside the temp folder.
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {error} info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log {access};\n\
             client_body_temp_path {t}/body;\nproxy_temp_path {t}/proxy;\n\
             fastcgi_temp_path {t}/fastcgi;\nuwsgi_temp_path {t}/uwsgi;\n\
             scgi_temp_path {t}/scgi;\n\
             {server}}}\n",
            pid = p("nginx.pid"),
            error = p("error.log"),
            access = p("access.log"),
            t = p("tmp"),
        );
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx temp folder");
        std::fs::write(prefix.join("nginx.conf"), conf).expect("nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(prefix.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prefix.join("stderr")).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {NGINX}: {e}"));
        // Owned before anything can fail, so nginx is killed on every path.
        let mut nginx = Nginx { child, addr, dir };
        let deadline = Instant::now() + WAIT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(nginx);
            }
            if let Some(status) = nginx.child.try_wait().expect("waiting for nginx") {
                return Err(format!("nginx exited ({status}):\n{}", nginx.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("nginx did not listen in time:\n{}", nginx.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "stderr:\n{}\nerror.log:\n{}",
            read("stderr"),
            read("error.log")
        )
    }

    /// The request lines nginx logged so far (`GET /path HTTP/1.1`).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
            .collect()
    }

    /// Sends `GET target` with extra header lines; returns the response.
    fn get(&self, target: &str, extra_headers: &str) -> Response {
        let mut stream = TcpStream::connect(self.addr).expect("connect to nginx");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: mirror.test\r\n{extra_headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        Response::parse(&raw)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 response with a `Content-Length` body (all nginx sends for static files).
struct Response {
    status: u16,
    /// Lowercased names, values as sent.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `qasid index show` against `repo` (a URL) with its own state folder; returns the JSON.
fn index_show(repo: &str, publisher: &Path, state: &Path) -> serde_json::Value {
    let out = assert_cmd::Command::cargo_bin("qasid")
        .unwrap()
        .args(["index", "show", "--repo", repo, "--json"])
        .arg("--publisher")
        .arg(publisher)
        .arg("--state")
        .arg(state)
        .timeout(WAIT)
        .assert()
        .success();
    serde_json::from_slice(&out.get_output().stdout).expect("index show --json")
}

/// The head's batch piece and listed pieces, read from the repo's `index.json`.
fn head_pieces(repo: &Path, layout: &PublisherLayout) -> (PieceRef, Vec<PieceRef>) {
    use base64::Engine as _;
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join(layout.index())).unwrap()).unwrap();
    let head = base64::engine::general_purpose::STANDARD
        .decode(envelope["head"].as_str().unwrap())
        .unwrap();
    let head: serde_json::Value = serde_json::from_slice(&head).unwrap();
    (
        serde_json::from_value(head["log"]["batch"].clone()).unwrap(),
        serde_json::from_value(head["log"]["pieces"].clone()).unwrap(),
    )
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn the_documented_nginx_block_serves_a_repo_that_qasid_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(7);
    let repo = dir.path().join("repo");
    let first = make_bundle(dir.path(), &k, "first", 1, 2048);
    let second = make_bundle(dir.path(), &k, "second", 1, 2048);
    publish(&repo, &k, &[&first.path]);
    publish(&repo, &k, &[&second.path]);
    // What a mirror store keeps beside the layout, to check it is refused too.
    for private in [".tmp/upload-in-progress", ".state/staged/piece.json"] {
        let path = repo.join(private);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"private").unwrap();
    }
    assert!(
        repo.join(".qasid/lock").is_file(),
        "publish keeps its lock in .qasid/"
    );
    let publisher = dir.path().join("publisher.pub");
    std::fs::write(&publisher, k.public().to_file_text()).unwrap();
    let layout = PublisherLayout::new(k.public());

    let nginx = Nginx::start(&repo);
    let state = dir.path().join("state");
    let shown = index_show(&nginx.base(), &publisher, &state);
    assert_eq!(shown["sequence"], 2, "{shown}");
    assert_eq!(shown["stale"], false, "{shown}");
    let names: Vec<&str> = shown["current"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"], "{shown}");

    // A third publish merges the pieces again; the client, up to date, fetches the head and
    // the batch piece only (a batch piece that is not listed: the layout must serve it).
    let third = make_bundle(dir.path(), &k, "third", 1, 2048);
    publish(&repo, &k, &[&third.path]);
    let (batch, listed) = head_pieces(&repo, &layout);
    assert!(!listed.contains(&batch), "the batch piece was merged away");
    let before = nginx.requests().len();
    let shown = index_show(&nginx.base(), &publisher, &state);
    assert_eq!(shown["sequence"], 3, "{shown}");
    assert_eq!(shown["entries"], 3, "{shown}");
    let fetched = nginx.requests()[before..].to_vec();
    assert_eq!(
        fetched,
        [
            format!("GET /{} HTTP/1.1", layout.index()),
            format!("GET /{} HTTP/1.1", layout.piece(&batch.sha256)),
        ],
        "an up-to-date client fetches the head and the batch piece"
    );

    // Private dot folders are refused (403, not just absent), however the path is spelled.
    for target in [
        "/.qasid/lock".to_owned(),
        "/.qasid/".to_owned(),
        "/.tmp/upload-in-progress".to_owned(),
        "/.tmp/".to_owned(),
        "/.state/staged/piece.json".to_owned(),
        "/%2eqasid/lock".to_owned(),
        "/%2Etmp/upload-in-progress".to_owned(),
        "/qasid/v1/../.qasid/lock".to_owned(),
        "/qasid/v1/publishers/%2e%2e/%2e%2e/%2e%2e/.state/staged/piece.json".to_owned(),
        format!("/{}/.hidden/index.json", layout.dir()),
    ] {
        let response = nginx.get(&target, "");
        assert_eq!(response.status, 403, "{target}");
        assert!(
            !response.body.windows(7).any(|w| w == b"private"),
            "{target} leaked a private file"
        );
    }
    // Only the layout is served.
    assert_eq!(nginx.get("/", "").status, 404);
    assert_eq!(nginx.get("/qasid/v1/publishers/", "").status, 404);
    assert_eq!(
        nginx.get(&format!("/{}/pieces/", layout.dir()), "").status,
        404
    );

    // Content types, caching, nosniff, byte-exact bodies.
    let index = nginx.get(&format!("/{}", layout.index()), "");
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some("application/json"));
    assert_eq!(index.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        index.body,
        std::fs::read(repo.join(layout.index())).unwrap()
    );
    let key_file = nginx.get(&format!("/{}", layout.publisher_pub()), "");
    assert_eq!(key_file.status, 200);
    assert_eq!(key_file.header("content-type"), Some("text/plain"));
    assert_eq!(
        key_file.header("cache-control"),
        Some("public, max-age=86400")
    );
    let immutable = Some("public, max-age=31536000, immutable");
    for piece in files_in(&repo.join(layout.pieces_dir())) {
        let name = piece.file_name().unwrap().to_str().unwrap();
        let served = nginx.get(&format!("/{}/{name}", layout.pieces_dir()), "");
        assert_eq!(served.status, 200, "{name}");
        assert_eq!(served.header("content-type"), Some("application/json"));
        assert_eq!(served.header("cache-control"), immutable);
        assert_eq!(served.body, std::fs::read(&piece).unwrap());
    }
    let bundle = nginx.get(&format!("/{}", layout.bundle(&first.sha256)), "");
    assert_eq!(bundle.status, 200);
    assert_eq!(bundle.header("content-type"), Some("application/zip"));
    assert_eq!(bundle.header("cache-control"), immutable);
    assert_eq!(bundle.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(bundle.body, std::fs::read(&first.path).unwrap());
    let minisig = nginx.get(&format!("/{}", layout.minisig(&first.sha256)), "");
    assert_eq!(minisig.status, 200);
    assert_eq!(minisig.header("content-type"), Some("text/plain"));
    assert_eq!(minisig.header("cache-control"), immutable);
    // Resumable downloads and revalidation come with nginx.
    let tail = nginx.get(
        &format!("/{}", layout.bundle(&first.sha256)),
        "Range: bytes=100-\r\n",
    );
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, bundle.body[100..]);
    let etag = bundle.header("etag").expect("an ETag");
    let revalidated = nginx.get(
        &format!("/{}", layout.bundle(&first.sha256)),
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(revalidated.status, 304);
    // A missing object's 404 is not cached for a year.
    let missing = nginx.get(
        &format!(
            "/{}",
            layout.bundle(&qasid::content_id::ContentId::of_bytes(b"none"))
        ),
        "",
    );
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), None);
}
