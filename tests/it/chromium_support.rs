//! Headless Debian Chromium for the reader-page tests: one run at a time, a fresh profile each
//! run, isolated from the network (every host name resolves to the test's own server), killed
//! after [`CHROMIUM_TIMEOUT`].
//!
//! Chromium missing is a test failure with an install hint, never a skip: CI installs
//! `chromium fonts-noto-core`.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest a Chromium run may take before it is killed and the test fails.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
/// If set, screenshots are copied to this folder for a person to look at.
pub const SCREENSHOT_DIR_VAR: &str = "QASID_SCREENSHOT_DIR";

/// One Chromium at a time: the machine has two cores and the runs are heavy.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// Runs headless Chromium with `args` after the isolation flags; returns its stdout. Every host
/// name resolves to `server`, so no request can leave the machine unseen. Fails the test if
/// Chromium is missing, exits unsuccessfully or runs longer than [`CHROMIUM_TIMEOUT`].
pub fn run(server: SocketAddr, args: &[String]) -> String {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} not found: these tests need a real browser. Install Debian's packages: \
         apt-get install -y --no-install-recommends chromium fonts-noto-core (the fonts give \
         the Urdu glyphs)"
    );
    let _one = ONE_BROWSER.lock().unwrap_or_else(PoisonError::into_inner);
    let work = tempfile::tempdir().expect("temp dir");
    let profile = work.path().join("profile");
    let (stdout_path, stderr_path) = (work.path().join("stdout"), work.path().join("stderr"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--host-resolver-rules=MAP * {server}"))
        .args(args)
        .env("HOME", work.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium ran longer than {CHROMIUM_TIMEOUT:?} and was killed; stderr:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    fs::read_to_string(&stdout_path).expect("chromium output")
}

/// The DOM Chromium built for `url` (after its scripts, if any, ran).
pub fn dump_dom(server: SocketAddr, url: &str) -> String {
    let dom = run(server, &["--dump-dom".into(), url.into()]);
    assert!(dom.contains("</html>"), "no DOM for {url}: {dom:?}");
    dom
}

/// Takes a 1000×1400 screenshot of `url` and returns the PNG after checking it is a real,
/// non-trivial one. Kept as `name` in `$QASID_SCREENSHOT_DIR` if that is set.
pub fn screenshot(server: SocketAddr, url: &str, name: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let png = dir.path().join(name);
    run(
        server,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1000,1400".into(),
            "--hide-scrollbars".into(),
            url.into(),
        ],
    );
    let bytes = fs::read(&png).unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{name} is not a PNG"
    );
    assert!(
        bytes.len() > 20_000,
        "{name} is only {} bytes: a blank page?",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os(SCREENSHOT_DIR_VAR) {
        fs::create_dir_all(&keep).expect("screenshot dir");
        fs::copy(&png, Path::new(&keep).join(name)).expect("copy screenshot");
    }
    bytes
}

/// Roughly the text a reader sees: tags as spaces, whitespace runs collapsed.
pub fn visible_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
