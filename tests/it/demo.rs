//! `qasid demo` end to end: the real binary tells the story and its claims are checked from
//! outside (exit code, narration, the saved article, the pages it leaves up).

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qasid() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qasid"));
    cmd.env("NO_COLOR", "1").env_remove("RUST_LOG");
    cmd
}

#[test]
fn demo_exit_tells_the_whole_story_and_its_claims_hold() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("demo");
    let started = Instant::now();
    let out = qasid()
        .args(["demo", "--exit", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "the story must take under 10 s, took {elapsed:?}"
    );
    for claim in [
        "signed 3 articles into bundles",
        "mirror B  synced from mirror A only: holds 3 bundles",
        "timed out (blocked)",
        "stale, not used (index: sequence 1 is older than sequence 2)",
        "refused as a rollback",
        "forgery refused (",
        "nothing saved",
        "verified copy from",
        "A Volunteer Mirror Network Goes Live for Blocked Newsrooms",
        &format!("Working files kept in {}.", dir.display()),
        "The mirrors are stopped",
    ] {
        assert!(stdout.contains(claim), "missing {claim:?} in:\n{stdout}");
    }
    // With --exit the servers are stopped before the closing lines: no URL of theirs is
    // offered as a reader page.
    assert!(!stdout.contains("Reader pages"), "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.trim_start().starts_with("article   http")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("CORRECTION: the mirror network has been shut down"),
        "the forged text must never be shown"
    );

    // The saved article verifies with the publisher's key, independently of the demo.
    let saved = dir.join("reader-downloads/mirror-network-launch-v1.zip");
    let verify = qasid()
        .arg("verify")
        .arg(&saved)
        .arg("--publisher")
        .arg(dir.join("keys/publisher.pub"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    // The hostile-only reader saved nothing.
    let lone = dir.join("reader-hostile-only");
    assert!(
        !lone.exists() || std::fs::read_dir(&lone).unwrap().next().is_none(),
        "the forgery must not be saved"
    );
    // The forgery on the hostile site really is there, and really fails verification.
    let forged = zip_not_matching_its_name(&dir.join("hostile-site"))
        .expect("the hostile site holds a forged bundle under a real bundle's name");
    let refused = qasid()
        .arg("verify")
        .arg(&forged)
        .arg("--publisher")
        .arg(dir.join("keys/publisher.pub"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
}

/// Forged bytes sit under a real bundle's name: the `.zip` whose sha256 is not its name.
fn zip_not_matching_its_name(dir: &Path) -> Option<std::path::PathBuf> {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "zip") {
                use sha2::Digest as _;
                let bytes = std::fs::read(&path).ok()?;
                let hash = hex::encode(sha2::Sha256::digest(&bytes));
                let stem = path.file_stem()?.to_str()?;
                if hash != stem {
                    return Some(path);
                }
            }
        }
    }
    None
}

#[test]
fn demo_keeps_reader_pages_up_until_interrupted() {
    let mut child = qasid()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("  article   ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("demo printed its article page URL");

    // A plain HTTP GET of the article page (following the redirect to the versioned page).
    let page = http_get_following_one_redirect(&url);
    assert!(
        page.contains("<strong>verified:</strong> signed by"),
        "{page}"
    );

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "demo exit after Ctrl-C: {status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get_following_one_redirect(url: &str) -> String {
    let (status, headers, body) = http_get(url);
    if status == 302 || status == 301 {
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .expect("redirect has a location")
            .trim()
            .to_owned();
        let base = &url[..url[7..].find('/').map_or(url.len(), |i| i + 7)];
        let next = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        return http_get(&next).2;
    }
    body
}

fn http_get(url: &str) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::Write as _;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// `demo --exit` without `--dir` printed a working folder it had already removed.
#[test]
fn demo_exit_without_dir_names_no_folder_that_is_gone() {
    let out = qasid().args(["demo", "--exit"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("temporary working files are removed"),
        "{stdout}"
    );
    assert!(!stdout.contains("Working files:"), "{stdout}");
    // The narration names paths as they are made; the closing lines speak of the end.
    let closing = &stdout[stdout.find("Story told").expect("a closing line")..];
    for word in closing.split_whitespace() {
        if word.contains("qasid-demo") || word.starts_with("/tmp/") {
            let path = word.trim_end_matches(['.', ',', ')']);
            assert!(
                Path::new(path).exists(),
                "{path} is printed but gone:\n{stdout}"
            );
        }
    }
}
