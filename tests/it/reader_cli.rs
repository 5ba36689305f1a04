//! Reader friction found following the guides (issue 18, "Readers"): the `[reader]` keys of
//! mirrors.toml, `verify`'s hashes, `demo --exit`'s closing lines, the waiting line and the
//! progress rate on a terminal.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::reader_support::{
    code, fate, json_of, key, make_bundle, publish, qasid, stderr, Tarpit,
};

fn write_config(path: &Path, reader: &str) {
    let text = format!(
        "[[publisher]]\nkey = \"{}\"\n\n[reader]\n{reader}",
        key().public().to_base64()
    );
    std::fs::write(path, text).unwrap();
}

fn fetch_with_config(cwd: &Path, config: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = qasid()
        .current_dir(cwd)
        .arg("fetch")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// `[reader]` refused `connect_timeout` and bare folder paths that the flags accept. Every key
/// used here was refused before (exit 2, "unknown field" or "not a URL").
#[test]
fn reader_keys_and_folder_mirrors_in_the_config_work_like_the_flags() {
    let dir = TempDir::new().unwrap();
    let bundle = make_bundle(dir.path(), &key(), "alpha", 1, 1000);
    publish(&dir.path().join("usb"), &key(), &[bundle.path()]);
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let pit = Tarpit::start();

    // Relative paths are relative to the config file's folder, not the current one.
    let config = dir.path().join("reader.toml");
    write_config(
        &config,
        &format!(
            "mirrors = [\"usb\", \"{}\"]\nconnect_timeout = \"2s\"\ntimeout = \"1s\"\n\
             state = \"state\"\nout = \"news\"\n",
            pit.url
        ),
    );
    let (out, _) = fetch_with_config(&elsewhere, &config, &["alpha", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json_of(&out);
    let saved = dir.path().join("news").join("alpha-v1.zip");
    assert!(saved.is_file(), "saved where reader.out says: {doc}");
    assert!(
        dir.path().join("state").is_dir(),
        "state where reader.state says"
    );
    assert_eq!(
        doc["article"]["mirror"],
        format!("{}/", dir.path().join("usb").display())
    );

    // Only the tarpit: reader.timeout (1 s) is what ends the wait, not the 30 s default.
    let config = dir.path().join("tarpit.toml");
    write_config(
        &config,
        &format!(
            "mirrors = [\"{}\"]\ntimeout = \"1s\"\nstate = \"state2\"\n",
            pit.url
        ),
    );
    let (out, took) = fetch_with_config(&elsewhere, &config, &["--json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(fate(&json_of(&out), &pit.url), "timed_out");

    // A flag still wins over its key.
    let (out, _) = fetch_with_config(
        &elsewhere,
        &config,
        &[
            "--mirror",
            dir.path().join("usb").to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

/// The web page tells readers to check a bundle with `sha256sum`; `verify` printed only the
/// manifest's hash, labelled "content". Now both, labelled, and the file's matches sha256sum.
#[test]
fn verify_prints_the_hash_sha256sum_shows_and_the_manifest_hash() {
    let dir = TempDir::new().unwrap();
    let bundle = make_bundle(dir.path(), &key(), "alpha", 1, 1000);
    let out = qasid()
        .arg("verify")
        .arg(bundle.path())
        .args(["--publisher", &key().public().to_base64()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(bundle.path())
        .output()
        .unwrap();
    let sum = String::from_utf8(sum.stdout).unwrap();
    let file_hash = sum.split_whitespace().next().unwrap();
    let line = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"))
            .to_owned()
    };
    let bundle_line = line("bundle:");
    assert!(
        bundle_line.contains(file_hash),
        "{bundle_line} vs sha256sum {file_hash}"
    );
    assert!(bundle_line.contains("sha256sum"), "{bundle_line}");
    let manifest_line = line("manifest:");
    assert!(!manifest_line.contains(file_hash));
    assert!(manifest_line.contains("manifest.json"), "{manifest_line}");
}

/// `fetch` against a tarpit was silent for its whole wait (30 s by default). On a terminal a
/// line now says what it waits for, from which mirror, and for how long; piped (scripts,
/// `--json`), nothing of the kind is written.
#[test]
fn fetch_on_a_terminal_says_what_it_waits_for_and_stays_quiet_when_piped() {
    let dir = TempDir::new().unwrap();
    let pit = Tarpit::start();
    let config = dir.path().join("tarpit.toml");
    write_config(
        &config,
        &format!(
            "mirrors = [\"{}\"]\ntimeout = \"3s\"\nstate = \"state\"\n",
            pit.url
        ),
    );
    // `script` gives the command a pseudo-terminal (wide enough for the whole line) and
    // records what was drawn on it.
    let command = format!(
        "stty cols 200; exec {} fetch --config {}",
        env!("CARGO_BIN_EXE_qasid"),
        config.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("waiting for the index from {}", pit.url)),
        "{text}"
    );
    assert!(
        text.contains("· 1s") && text.contains("· 2s"),
        "the time so far, counting: {text}"
    );

    let (out, _) = fetch_with_config(dir.path(), &config, &[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(!stderr(&out).contains("waiting for"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}
