//! Every command's `--json` output, once succeeding and once failing, is the one documented
//! shape (docs/JSON.md): `schema`, `ok`, an `error` object with the exit code on failure, the
//! publisher always as `{key_id, key}`, no nulls.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use crate::json_support::{check_json, validate};
use crate::mirror_support::{article_dir, Process};
use crate::reader_support::{qasid, tamper};

/// The commands that have `--json`, each run here succeeding and failing.
const COVERED: &[&str] = &[
    "bundle",
    "fetch",
    "index-show",
    "reader-page",
    "keygen",
    "note-show",
    "root-show",
    "publish",
    "push",
    "status",
    "sync",
    "verify",
];

/// Any non-zero exit code: which one is the command's own business, tested elsewhere.
const ANY_FAILURE: i32 = -1;

/// A passphrase strong enough for any keygen policy, so the run is unattended whether keygen
/// encrypts by default or not.
const PASSPHRASE: &str = "correct horse battery staple 7";

fn run(dir: &Path, args: &[&str]) -> Output {
    qasid()
        .current_dir(dir)
        .env("QASID_PASSPHRASE", PASSPHRASE)
        .args(args)
        .output()
        .unwrap()
}

struct Checked {
    ok: BTreeSet<String>,
    failed: BTreeSet<String>,
    docs: Vec<(String, serde_json::Value)>,
}

impl Checked {
    /// Checks the run's document; `code` is the exit code expected, or [`ANY_FAILURE`].
    fn expect(&mut self, out: &Output, command: &str, code: i32) -> serde_json::Value {
        let doc = check_json(out, &format!("qasid/{command}/1"));
        let actual = out.status.code().unwrap_or(-1);
        assert!(
            actual == code || (code == ANY_FAILURE && actual > 0),
            "{command}: exit code {actual}, expected {code}; stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let set = if code == 0 {
            &mut self.ok
        } else {
            &mut self.failed
        };
        set.insert(command.to_owned());
        self.docs
            .push((format!("{command} (exit {actual})"), doc.clone()));
        doc
    }
}

#[test]
fn every_command_prints_the_documented_shape_on_success_and_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut c = Checked {
        ok: BTreeSet::new(),
        failed: BTreeSet::new(),
        docs: Vec::new(),
    };

    let doc = c.expect(
        &run(dir, &["keygen", "--out", "keys", "--json"]),
        "keygen",
        0,
    );
    let key = doc["publisher"]["key"].as_str().unwrap().to_owned();
    let key_id = doc["publisher"]["key_id"].as_str().unwrap().to_owned();
    // The key exists already (no --force).
    let out = run(dir, &["keygen", "--out", "keys", "--json"]);
    c.expect(&out, "keygen", ANY_FAILURE);

    article_dir(dir, "launch", "Launch", 1000);
    let doc = c.expect(
        &run(
            dir,
            &[
                "bundle",
                "src-launch",
                "--name",
                "launch",
                "--key",
                "keys/publisher.key",
                "--out",
                "launch.zip",
                "--json",
            ],
        ),
        "bundle",
        0,
    );
    assert_eq!(doc["publisher"]["key_id"], key_id.as_str());
    let bundle_sha256 = doc["sha256"].as_str().unwrap().to_owned();
    c.expect(
        &run(
            dir,
            &[
                "bundle",
                "nosuchdir",
                "--key",
                "keys/publisher.key",
                "--out",
                "x.zip",
                "--json",
            ],
        ),
        "bundle",
        ANY_FAILURE,
    );

    let doc = c.expect(
        &run(
            dir,
            &[
                "verify",
                "launch.zip",
                "--publisher",
                "keys/publisher.pub",
                "--json",
            ],
        ),
        "verify",
        0,
    );
    assert_eq!(
        doc["sha256"],
        bundle_sha256.as_str(),
        "verify's sha256 is the file's"
    );
    assert_eq!(doc["publisher"]["key"], key.as_str());
    std::fs::copy(dir.join("launch.zip"), dir.join("tampered.zip")).unwrap();
    tamper(&dir.join("tampered.zip"));
    c.expect(
        &run(
            dir,
            &["verify", "tampered.zip", "--publisher", &key, "--json"],
        ),
        "verify",
        3,
    );
    // Refused by clap (no file): still the JSON document, as a usage error.
    c.expect(&run(dir, &["verify", "--json"]), "verify", 2);

    let publish = [
        "publish",
        "launch.zip",
        "--repo",
        "repo",
        "--key",
        "keys/publisher.key",
        "--json",
    ];
    let doc = c.expect(&run(dir, &publish), "publish", 0);
    assert_eq!(doc["published"], true);
    assert_eq!(doc["index"]["sequence"], 1);
    // Nothing new: explicit false and the unchanged sequence, no nulls (the schema forbids them).
    let doc = c.expect(&run(dir, &publish), "publish", 0);
    assert_eq!(doc["published"], false);
    assert_eq!(doc["sequence"], 1);
    assert_eq!(doc["bundles"][0]["added"], false);
    assert!(doc.get("index").is_none());
    c.expect(
        &run(
            dir,
            &[
                "publish",
                "missing.zip",
                "--repo",
                "repo",
                "--key",
                "keys/publisher.key",
                "--json",
            ],
        ),
        "publish",
        ANY_FAILURE,
    );

    let doc = c.expect(
        &run(
            dir,
            &[
                "index",
                "show",
                "--repo",
                "repo",
                "--publisher",
                &key,
                "--state",
                "st",
                "--json",
            ],
        ),
        "index-show",
        0,
    );
    assert_eq!(doc["current"][0]["sha256"], bundle_sha256.as_str());
    let out = run(
        dir,
        &[
            "index",
            "show",
            "--repo",
            "empty",
            "--publisher",
            &key,
            "--state",
            "st",
            "--json",
        ],
    );
    c.expect(&out, "index-show", ANY_FAILURE);

    let doc = c.expect(
        &run(
            dir,
            &[
                "fetch",
                "--mirror",
                "repo",
                "--publisher",
                &key,
                "--state",
                "st1",
                "--json",
            ],
        ),
        "fetch",
        0,
    );
    assert_eq!(
        doc["publishers"][0]["articles"][0]["publisher"]["key"],
        key.as_str()
    );
    let doc = c.expect(
        &run(
            dir,
            &[
                "fetch",
                "launch",
                "--mirror",
                "repo",
                "--publisher",
                &key,
                "--state",
                "st1",
                "--out",
                "got",
                "--json",
            ],
        ),
        "fetch",
        0,
    );
    assert_eq!(doc["article"]["sha256"], bundle_sha256.as_str());
    let doc = c.expect(
        &run(
            dir,
            &[
                "fetch",
                "--mirror",
                "http://127.0.0.1:1/",
                "--publisher",
                &key,
                "--state",
                "st2",
                "--connect-timeout",
                "2s",
                "--json",
            ],
        ),
        "fetch",
        1,
    );
    assert_eq!(
        doc["publishers"][0]["ok"], false,
        "the partial report is kept"
    );
    assert_eq!(doc["mirrors"][0]["fate"], "refused");

    let doc = c.expect(
        &run(
            dir,
            &[
                "reader-page",
                "--publisher",
                &key,
                "--mirror",
                "http://127.0.0.1:1/",
                "--out",
                "reader.html",
                "--json",
            ],
        ),
        "reader-page",
        0,
    );
    let page = std::fs::read(dir.join("reader.html")).unwrap();
    assert_eq!(doc["size"], page.len());
    c.expect(
        &run(dir, &["reader-page", "--out", "none.html", "--json"]),
        "reader-page",
        2,
    );

    let store = dir.join("store");
    let mirror = Process::start(&[
        "mirror",
        "--listen",
        "127.0.0.1:0",
        "--store",
        store.to_str().unwrap(),
        "--publisher",
        &key,
    ]);
    let base = format!("{}/", mirror.base);
    let doc = c.expect(
        &run(dir, &["push", "--repo", "repo", "--to", &base, "--json"]),
        "push",
        0,
    );
    assert_eq!(doc["pushes"][0]["ok"], true);
    let doc = c.expect(
        &run(
            dir,
            &[
                "push",
                "--repo",
                "repo",
                "--to",
                "http://127.0.0.1:1/",
                "--json",
            ],
        ),
        "push",
        1,
    );
    assert_eq!(doc["pushes"][0]["ok"], false, "each push's result is kept");

    let sync = |store: &str, upstream: &str| {
        let args = [
            "sync",
            "--once",
            "--store",
            store,
            "--publisher",
            &key,
            "--upstream",
            upstream,
        ];
        run(
            dir,
            &[&args[..], &["--connect-timeout", "2s", "--json"]].concat(),
        )
    };
    let doc = c.expect(&sync("store2", &base), "sync", 0);
    assert_eq!(doc["publishers"][0]["installed"], 1);
    assert_eq!(doc["publishers"][0]["publisher"]["key_id"], key_id.as_str());
    let doc = c.expect(&sync("store3", "http://127.0.0.1:1/"), "sync", 1);
    assert!(
        doc["publishers"][0].get("installed").is_none(),
        "absent, not null"
    );
    drop(mirror);
    let doc = c.expect(
        &run(dir, &["status", "--store", "store2", "--json"]),
        "status",
        0,
    );
    assert_eq!(doc["publishers"][0]["publisher"]["key_id"], key_id.as_str());
    assert_eq!(doc["publishers"][0]["index"]["sequence"], 1);
    c.expect(
        &run(dir, &["status", "--store", "no-such-store", "--json"]),
        "status",
        2,
    );

    let create = run(
        dir,
        &[
            "note",
            "create",
            "--key",
            "keys/publisher.key",
            "--mirror",
            "https://m.example/",
        ],
    );
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let uri = String::from_utf8(create.stdout).unwrap().trim().to_owned();
    let doc = c.expect(
        &run(dir, &["note", "show", &uri, "--publisher", &key, "--json"]),
        "note-show",
        0,
    );
    assert_eq!(doc["publisher"]["key_id"], key_id.as_str());
    let other = "RWRLc1rBdOQGNsBQxWN6RPqGKf/zzMziMAyzYqY9mdlfxUFFJm9DMkRa";
    c.expect(
        &run(dir, &["note", "show", &uri, "--publisher", other, "--json"]),
        "note-show",
        3,
    );

    // A one-key publisher (no roots yet) is shown; a missing root file is an error.
    let doc = c.expect(
        &run(dir, &["root", "show", "--repo", "repo", "--json"]),
        "root-show",
        0,
    );
    assert_eq!(doc["publisher"]["key"], key.as_str());
    assert_eq!(doc["version"], 0);
    c.expect(
        &run(dir, &["root", "show", "no-such-root.json", "--json"]),
        "root-show",
        ANY_FAILURE,
    );

    validate(&c.docs);
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    assert_eq!(c.ok, covered, "a success case for every command");
    assert_eq!(c.failed, covered, "a failure case for every command");
}

/// The commands with `--json`, read from the man pages (rendered from the real flags), are
/// exactly the ones covered above: a new command with `--json` fails here until its success
/// and failure are checked (docs/JSON.md, "Adding a command").
#[test]
fn every_json_command_is_covered() {
    let tmp = tempfile::tempdir().unwrap();
    let out = qasid()
        .args(["man", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut with_json = BTreeSet::new();
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let path = entry.unwrap().path();
        let page = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if let Some(command) = name.strip_prefix("qasid-") {
            if page.contains("\\-\\-json") {
                with_json.insert(command.to_owned());
            }
        }
    }
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        with_json, covered,
        "every command with --json needs a success and a failure case in tests/it/json_output.rs"
    );
}
