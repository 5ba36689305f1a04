//! The reader pages in a real browser: headless Chromium loads them from a loopback HTTP
//! server, and the tests check the DOM it built, a screenshot, and every request it made.
//!
//! Chromium resolves every host name to the test server (`--host-resolver-rules`), so a load
//! from any other origin reaches the server too and is logged: with its `Host` for `http`, as
//! a TLS handshake naming the host (SNI) for `https`. The tests assert that no request names a
//! host that the page or its article source mentions: such a request could only come from the
//! page. (Chromium's own service traffic, e.g. component update checks, names hosts no page
//! mentions and is not the page's doing.) A canary page with the same payloads, unsanitised,
//! proves that both the script detector and the request log catch a failure.
//!
//! Needs Debian's `chromium` at /usr/bin/chromium; without it these tests fail, never skip
//! (see `chromium_support`, shared with the real-mirror browser test).

use crate::chromium_support;

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chromium_support::visible_text;
use qasid::content_id::ContentId;
use qasid::keys::{PublicKey, SecretKey};
use qasid::pages::{
    article_page, article_url, asset_url, home_page, ArticleListing, ArticlePage, PublisherListing,
    SiteInfo, CONTENT_SECURITY_POLICY,
};

/// Longest the test server lives, whatever happens to the test.
const SERVER_LIFETIME: Duration = Duration::from_secs(300);
/// Per-connection read and write timeout of the test server.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Payloads that run script or load from elsewhere if they survive. Each script payload marks
/// the DOM with `pw` + `ned-…`, a string that appears nowhere unless the script ran.
const HTML_PAYLOADS: &[&str] = &[
    "<script>document.body.setAttribute('data-a', 'pw' + 'ned-script')</script>",
    "<img src=\"x\" onerror=\"document.body.setAttribute('data-b', 'pw' + 'ned-onerror')\">",
    "<svg onload=\"document.body.setAttribute('data-c', 'pw' + 'ned-svg')\"></svg>",
    "<iframe srcdoc=\"<script>parent.document.body.setAttribute('data-d', 'pw' + 'ned-frame')</script>\"></iframe>",
    "<img src=\"http://tracker.example/pixel.png\" alt=\"pixel\">",
    "<img src=\"https://tracker.example/pixel-tls.png\" alt=\"tls pixel\">",
    "<link rel=\"stylesheet\" href=\"http://tracker.example/sheet.css\">",
    "<style>@import url(http://tracker.example/import.css);</style>",
    "<p style=\"background-image:url(http://tracker.example/background.png)\">styled</p>",
    "<object data=\"http://tracker.example/object\"></object>",
    "<iframe src=\"http://tracker.example/frame\"></iframe>",
    "<a href=\"javascript:document.body.setAttribute('data-e', 'pw' + 'ned-link')\">link</a>",
    "<form action=\"http://tracker.example/form\"><input name=\"q\"><button>send</button></form>",
];

/// Markdown-only payloads, added to the hostile article after the raw HTML ones.
const MARKDOWN_PAYLOADS: &str = "![tracked](http://tracker.example/markdown.png)\n\n\
    ![tracked tls](https://tracker.example/markdown-tls.png)\n\n\
    [click me](javascript:alert(1))\n\n[data](data:text/html,<script>alert(1)</script>)\n";

const SCRIPT_MARKER: &str = "pwned";

fn key() -> PublicKey {
    SecretKey::from_seed(&[21u8; 32]).public().clone()
}

fn seed(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(path)
}

fn article(
    name: &str,
    language: &str,
    title: &str,
    markdown: String,
    files: &[&str],
) -> ArticlePage {
    ArticlePage {
        publisher: key(),
        publisher_name: Some("Radio Sangam".into()),
        name: name.into(),
        version: 1,
        title: title.into(),
        author: "Test Author".into(),
        date: "2026-11-18".into(),
        language: language.into(),
        bundle_sha256: ContentId::of_bytes(name.as_bytes()),
        bundle_size: 20_480,
        manifest_sha256: ContentId::of_bytes(format!("{name} manifest").as_bytes()),
        files: files.iter().map(|f| f.to_string()).collect(),
        attachments: Vec::new(),
        mirrors: Vec::new(),
        markdown,
    }
}

fn urdu_article() -> ArticlePage {
    article(
        "urdu-press-freedom",
        "ur",
        "انٹرنیٹ بندش میں بھی کمیونٹی ریڈیو کی آواز خاموش نہ ہوئی",
        fs::read_to_string(seed("urdu-press-freedom/article.md")).expect("Urdu seed"),
        &["article.md"],
    )
}

fn launch_article() -> ArticlePage {
    article(
        "mirror-network-launch",
        "en",
        "A Volunteer Mirror Network Goes Live for Blocked Newsrooms",
        fs::read_to_string(seed("mirror-network-launch/article.md")).expect("launch seed"),
        &["article.md", "images/mirror-map.png"],
    )
}

fn hostile_article() -> ArticlePage {
    let markdown = format!(
        "---\ntitle: t\nauthor: a\ndate: 2026-11-18\nlanguage: en\n---\n# Hostile\n\n{}\n\n{MARKDOWN_PAYLOADS}",
        HTML_PAYLOADS.join("\n\n")
    );
    article(
        "hostile",
        "en",
        "Hostile <b>article</b>",
        markdown,
        &["article.md"],
    )
}

/// The folder the test server serves: URL path `/a/b/` is `a/b/index.html`.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn put(&self, url_path: &str, bytes: &[u8]) {
        let mut path = self.dir.path().join(url_path.trim_start_matches('/'));
        if url_path.ends_with('/') {
            path.push("index.html");
        }
        fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
        fs::write(&path, bytes).expect("write page");
    }

    fn put_article(&self, a: &ArticlePage) -> String {
        let url = article_url(&a.publisher, &a.name, a.version);
        self.put(&url, article_page(a).as_bytes());
        url
    }
}

/// One request as the test server saw it.
#[derive(Clone, PartialEq, Eq)]
enum Seen {
    Http {
        host: String,
        target: String,
    },
    /// Bytes that are not an HTTP request: a TLS handshake for an `https` URL, which names its
    /// host in plain text (SNI).
    Other(Vec<u8>),
}

impl Seen {
    /// Whether this request was for `host` (any port).
    fn names(&self, host: &str) -> bool {
        match self {
            Seen::Http { host: h, .. } => h.split(':').next() == Some(host),
            Seen::Other(raw) => raw.windows(host.len()).any(|w| w == host.as_bytes()),
        }
    }
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Http { host, target } => write!(f, "http://{host}{target}"),
            Seen::Other(raw) => {
                let text = String::from_utf8_lossy(raw);
                let words: Vec<&str> = text
                    .split(|c: char| !(c.is_ascii_graphic()))
                    .filter(|w| w.len() >= 6 && w.contains('.'))
                    .collect();
                write!(f, "non-HTTP ({} bytes, mentions {words:?})", raw.len())
            }
        }
    }
}

/// Every host name that `text` mentions after `//` (URLs, protocol-relative references).
fn hosts_named_in(text: &str) -> BTreeSet<String> {
    text.match_indices("//")
        .filter_map(|(i, _)| {
            let host: String = text[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                .collect::<String>()
                .to_ascii_lowercase();
            host.contains('.').then_some(host)
        })
        .collect()
}

/// A loopback HTTP/1.1 server for a [`Site`] that logs every request. It stops when dropped,
/// or after [`SERVER_LIFETIME`] at the latest.
struct Server {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(root: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop, root) = (Arc::clone(&log), Arc::clone(&stop), root.to_path_buf());
            std::thread::spawn(move || {
                let deadline = Instant::now() + SERVER_LIFETIME;
                let mut handlers = Vec::new();
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (log, root) = (Arc::clone(&log), root.clone());
                            handlers.push(std::thread::spawn(move || serve(stream, &root, &log)));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                for handler in handlers {
                    // Each handler ends within IO_TIMEOUT: its socket has read/write timeouts.
                    let _ = handler.join();
                }
            })
        };
        Self {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests for any host in `hosts` other than this server.
    fn requests_for(&self, hosts: &BTreeSet<String>) -> Vec<Seen> {
        let own = self.addr.ip().to_string();
        self.seen()
            .into_iter()
            .filter(|s| hosts.iter().any(|h| *h != own && s.names(h)))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers one request on `stream` (then closes it), logging what was asked.
fn serve(mut stream: TcpStream, root: &Path, log: &Mutex<Vec<Seen>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    if request.is_empty() {
        return; // A speculative connection that never sent anything.
    }
    let text = String::from_utf8_lossy(&request);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen::Other(request.clone()));
        return;
    };
    if !version.starts_with("HTTP/1.") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen::Other(request.clone()));
        return;
    }
    let host = lines
        .find_map(|l| {
            l.strip_prefix("Host: ")
                .or_else(|| l.strip_prefix("host: "))
        })
        .unwrap_or_default()
        .to_owned();
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Seen::Http {
            host,
            target: target.to_owned(),
        });
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let file = (path.starts_with('/') && !path.split('/').any(|s| s == ".." || s.contains('\\')))
        .then(|| {
            let mut file = root.join(path.trim_start_matches('/'));
            if path.ends_with('/') {
                file.push("index.html");
            }
            file
        });
    let response = match file.and_then(|f| fs::read(&f).ok().map(|bytes| (f, bytes))) {
        Some((file, body)) => {
            let content_type = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html; charset=utf-8",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            [
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
                body,
            ]
            .concat()
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = stream.write_all(&response);
}

fn dump_dom(server: &Server, path: &str) -> String {
    chromium_support::dump_dom(server.addr, &server.url(path))
}

fn screenshot(server: &Server, path: &str, name: &str) {
    chromium_support::screenshot(server.addr, &server.url(path), name);
}

/// Fails if anything the server logged was for a host that one of `sources` (pages, article
/// Markdown) mentions: only the page could have caused such a request.
fn assert_no_page_caused_foreign_requests(server: &Server, sources: &[&str]) {
    let hosts: BTreeSet<String> = sources.iter().flat_map(|s| hosts_named_in(s)).collect();
    let foreign = server.requests_for(&hosts);
    assert!(
        foreign.is_empty(),
        "requests to hosts the pages mention ({hosts:?}): {foreign:?}"
    );
}

#[test]
fn chromium_shows_home_and_urdu_article_right_to_left_with_verification() {
    let site = Site::new();
    let urdu = urdu_article();
    let urdu_url = site.put_article(&urdu);
    let listing = PublisherListing {
        publisher: key(),
        name: Some("Radio Sangam".into()),
        sequence: 7,
        issued: "2026-11-18T06:00:00Z".into(),
        expires: "2026-11-25T06:00:00Z".into(),
        expired: true,
        articles: vec![ArticleListing {
            name: urdu.name.clone(),
            version: urdu.version,
            title: urdu.title.clone(),
            date: urdu.date.clone(),
            language: urdu.language.clone(),
            bundle_sha256: urdu.bundle_sha256,
        }],
        mirrors: Vec::new(),
    };
    let home_html = home_page(
        &SiteInfo {
            name: "Test mirror".into(),
        },
        &[listing],
    );
    site.put("/", home_html.as_bytes());
    let server = Server::start(site.dir.path());

    let home = dump_dom(&server, "/");
    assert!(home.contains("<html lang=\"en\" dir=\"ltr\">"), "{home}");
    assert!(
        home.contains(&format!("href=\"{urdu_url}\" lang=\"ur\" dir=\"rtl\"")),
        "{home}"
    );
    assert!(visible_text(&home).contains("Radio Sangam stale"), "{home}");

    let dom = dump_dom(&server, &urdu_url);
    assert!(dom.contains("<html lang=\"ur\" dir=\"rtl\">"), "{dom}");
    let text = visible_text(&dom);
    assert!(
        text.contains(&format!(
            "verified: signed by {} on 2026-11-18, content hash {}",
            urdu.publisher.id(),
            urdu.bundle_sha256
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "qasid verify urdu-press-freedom-v1.zip --publisher {}",
        urdu.publisher.to_base64()
    )));
    assert!(text.contains("minisign -Vm urdu-press-freedom-v1.zip -p publisher.pub"));
    assert!(text.contains("ریڈیو کی ایک مدیرہ نے بتایا"), "{text}");
    assert!(!dom.contains("<script"));

    screenshot(&server, &urdu_url, "urdu-article.png");
    let own = server.addr.to_string();
    for target in ["/", urdu_url.as_str()] {
        let request = Seen::Http {
            host: own.clone(),
            target: target.into(),
        };
        assert!(
            server.seen().contains(&request),
            "{request:?} not seen: {:?}",
            server.seen()
        );
    }
    assert_no_page_caused_foreign_requests(
        &server,
        &[&home_html, &article_page(&urdu), &urdu.markdown],
    );
}

#[test]
fn chromium_loads_article_images_from_the_mirror_only() {
    let site = Site::new();
    let launch = launch_article();
    let url = site.put_article(&launch);
    let image = asset_url(
        &launch.publisher,
        &launch.name,
        launch.version,
        "images/mirror-map.png",
    );
    site.put(
        &image,
        &fs::read(seed("mirror-network-launch/images/mirror-map.png")).expect("seed image"),
    );
    let server = Server::start(site.dir.path());

    let dom = dump_dom(&server, &url);
    assert!(
        dom.contains(&format!("<img src=\"{image}\" alt=\"Map of mirrors\">")),
        "{dom}"
    );
    screenshot(&server, &url, "launch-article.png");

    let request = Seen::Http {
        host: server.addr.to_string(),
        target: image,
    };
    assert!(
        server.seen().contains(&request),
        "{request:?} not seen: {:?}",
        server.seen()
    );
    assert_no_page_caused_foreign_requests(&server, &[&article_page(&launch), &launch.markdown]);
}

#[test]
fn chromium_runs_no_script_and_loads_nothing_foreign_from_a_hostile_article() {
    let site = Site::new();
    let hostile = hostile_article();
    let hostile_url = site.put_article(&hostile);
    // The same page without its CSP meta tag: the sanitiser alone must hold.
    let page = article_page(&hostile);
    let csp_meta = format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        CONTENT_SECURITY_POLICY.replace('\'', "&#39;")
    );
    assert!(page.contains(&csp_meta), "CSP meta tag not found in {page}");
    site.put(
        "/hostile-without-csp.html",
        page.replace(&csp_meta, "").as_bytes(),
    );
    // The payloads unsanitised: proves the detectors below see a failure when there is one.
    let canary = format!(
        "<!DOCTYPE html>\n<html><head><title>canary</title></head><body>\n{}\n</body></html>\n",
        HTML_PAYLOADS.join("\n")
    );
    site.put("/canary.html", canary.as_bytes());
    let server = Server::start(site.dir.path());

    // The canary gets a server of its own, so its loads cannot be mistaken for the pages'.
    let canary_server = Server::start(site.dir.path());
    let canary_dom = dump_dom(&canary_server, "/canary.html");
    for marker in ["pwned-script", "pwned-onerror"] {
        assert!(
            canary_dom.contains(marker),
            "canary {marker} did not run: {canary_dom}"
        );
    }
    let tracker: BTreeSet<String> = ["tracker.example".to_owned()].into();
    let canary_loads = canary_server.requests_for(&tracker);
    assert!(
        canary_loads.iter().any(|s| matches!(s, Seen::Http { .. }))
            && canary_loads.iter().any(|s| matches!(s, Seen::Other(_))),
        "the canary's http and https loads were not both seen: {canary_loads:?}"
    );

    for path in [hostile_url.as_str(), "/hostile-without-csp.html"] {
        let dom = dump_dom(&server, path);
        assert!(!dom.contains(SCRIPT_MARKER), "script ran in {path}: {dom}");
        let lower = dom.to_ascii_lowercase();
        for bad in [
            "<script",
            "<iframe",
            "<object",
            "<svg",
            "<form",
            "<link",
            "javascript:",
            "src=\"http",
            "style=\"",
        ] {
            assert!(!lower.contains(bad), "{bad:?} in the DOM of {path}: {dom}");
        }
        assert!(visible_text(&dom).contains("verified: signed by"), "{dom}");
    }
    assert_no_page_caused_foreign_requests(&server, &[&page, &hostile.markdown, &canary]);
}
