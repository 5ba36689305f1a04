//! The root-chain vector `tests/vectors/root-v1/` (docs/PROTOCOL.md §11): every file is built
//! here from fixed seeds and times, compared byte for byte with the checked-in copy, and run
//! through the reference verifier, whose conclusions must be the ones `expect.json` gives. A
//! second implementation (the browser reader) passes the same files. Regenerate with
//! `QASID_WRITE_ROOT_VECTORS=1 cargo test --test it roots_vector`.

use std::path::PathBuf;
use std::time::SystemTime;

use qasid::keys::{PublicKey, Role, SecretKey, Trusted as _};
use qasid::roots::{Chain, Delegation, Root, RootBody};
use serde_json::{json, Value};

/// The time every outcome is computed at.
const NOW: &str = "2026-03-15T00:00:00Z";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/root-v1")
}

/// Test keys by name, from fixed seeds (never use them for anything else).
const KEYS: [(&str, u8); 8] = [
    ("A", 0x61),
    ("B", 0x62),
    ("C", 0x63),
    ("D", 0x64),
    ("S", 0x71),
    ("S2", 0x72),
    ("S3", 0x73),
    ("X", 0x78),
];

fn key(name: &str) -> SecretKey {
    let seed = KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a named key")
        .1;
    SecretKey::from_seed(&[seed; 32])
}

fn public(name: &str) -> PublicKey {
    key(name).public().clone()
}

fn time(text: &str) -> SystemTime {
    humantime::parse_rfc3339(text).unwrap()
}

fn sorted_keys(names: &[&str]) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = names.iter().map(|n| public(n)).collect();
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys
}

/// (key name, roles, expires).
type Grant<'a> = (&'a str, &'a [Role], &'a str);

fn body(
    version: u64,
    previous: Option<&Root>,
    threshold: u64,
    roots: &[&str],
    grants: &[Grant],
) -> RootBody {
    let mut signing_keys: Vec<Delegation> = grants
        .iter()
        .map(|(n, roles, expires)| Delegation {
            key: public(n),
            roles: roles.to_vec(),
            expires: time(expires),
        })
        .collect();
    signing_keys.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    RootBody {
        version,
        previous: previous.map(Root::id),
        threshold,
        root_keys: sorted_keys(roots),
        signing_keys,
    }
}

fn signed(body: RootBody, by: &[&str]) -> Root {
    let mut root = Root::unsigned(body).unwrap();
    for n in by {
        root.sign(&key(n));
    }
    root
}

const FAR: &str = "2099-12-31T00:00:00Z";
const ALL: &[Role] = &Role::ALL;

/// One vector case: the files offered in order to a verifier that trusts `trust`, and what
/// it must conclude.
struct Case {
    name: &'static str,
    about: &'static str,
    /// Files offered in order, starting from root 1.
    roots: Vec<&'static str>,
    /// After the chain: does key NAME sign for ROLE at NOW?
    check: Option<(&'static str, Role)>,
    /// `None`: ok; else the error's kind.
    error: Option<&'static str>,
}

/// Every file of the vector: (name, bytes).
fn files() -> Vec<(String, Vec<u8>)> {
    let r1 = signed(
        body(1, None, 2, &["A", "B", "C"], &[("S", ALL, FAR)]),
        &["A", "B"],
    );
    let r2 = signed(
        body(2, Some(&r1), 2, &["A", "B", "C"], &[("S2", ALL, FAR)]),
        &["A", "C"],
    );
    let r3 = signed(
        body(
            3,
            Some(&r2),
            2,
            &["A", "B", "D"],
            &[
                ("S2", ALL, FAR),
                ("S3", &[Role::Note], "2026-01-01T00:00:00Z"),
            ],
        ),
        &["A", "B"],
    );
    let text = |r: &Root| String::from_utf8(r.to_bytes()).unwrap();
    let r2_text = text(&r2);
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("1.json".into(), r1.to_bytes()),
        ("2.json".into(), r2.to_bytes()),
        ("3.json".into(), r3.to_bytes()),
    ];
    let mut fail = |name: &str, bytes: Vec<u8>| out.push((format!("{name}.json"), bytes));
    fail(
        "fail_non_canonical_spacing",
        r2_text
            .replacen("\"version\":2", "\"version\": 2", 1)
            .into_bytes(),
    );
    fail("fail_non_canonical_member_order", {
        // threshold moved before previous: same document, another spelling.
        let t = r2_text.clone();
        let prev_at = t.find(",\"previous\"").unwrap();
        let thr_at = t.find(",\"threshold\":2").unwrap();
        let prev = &t[prev_at..thr_at];
        let thr = ",\"threshold\":2";
        let mut s = t[..prev_at].to_owned();
        s.push_str(thr);
        s.push_str(prev);
        s.push_str(&t[thr_at + thr.len()..]);
        s.into_bytes()
    });
    fail(
        "fail_non_canonical_no_final_newline",
        r2_text.trim_end().as_bytes().to_vec(),
    );
    fail(
        "fail_unknown_role",
        r2_text.replacen("\"bundle\"", "\"admin\"", 1).into_bytes(),
    );
    fail(
        "fail_old_keys_below_threshold",
        signed(
            body(2, Some(&r1), 1, &["D"], &[("S2", ALL, FAR)]),
            &["A", "D"],
        )
        .to_bytes(),
    );
    fail(
        "fail_new_keys_below_threshold",
        signed(
            body(2, Some(&r1), 2, &["A", "B", "D"], &[("S2", ALL, FAR)]),
            &["A", "C"],
        )
        .to_bytes(),
    );
    fail(
        "fail_one_root_key_of_three",
        signed(body(2, Some(&r1), 1, &["A"], &[("X", ALL, FAR)]), &["A"]).to_bytes(),
    );
    fail(
        "fail_stray_signature",
        signed(
            body(2, Some(&r1), 2, &["A", "B", "C"], &[("S2", ALL, FAR)]),
            &["A", "C", "X"],
        )
        .to_bytes(),
    );
    fail("fail_bad_signature", {
        // The first signature's first character changed: only that differs from 2.json.
        let at = r2_text.find("\"sig\":\"").unwrap() + 7;
        let mut t = r2_text.clone();
        let flipped = if t[at..].starts_with('A') { "B" } else { "A" };
        t.replace_range(at..at + 1, flipped);
        t.into_bytes()
    });
    fail(
        "fail_skipped_version",
        signed(
            body(3, Some(&r1), 2, &["A", "B", "C"], &[("S2", ALL, FAR)]),
            &["A", "C"],
        )
        .to_bytes(),
    );
    fail(
        "fail_wrong_previous",
        signed(
            body(2, Some(&r2), 2, &["A", "B", "C"], &[("S2", ALL, FAR)]),
            &["A", "C"],
        )
        .to_bytes(),
    );
    fail("fail_missing_previous", {
        // Root::unsigned refuses such a body: spelt by removing the member from 2.json.
        let at = r2_text.find(",\"previous\"").unwrap();
        let mut t = r2_text.clone();
        t.replace_range(at..at + 78, "");
        t.into_bytes()
    });
    fail(
        "fail_other_publishers_root_1",
        signed(
            body(1, None, 2, &["A", "B", "C"], &[("X", ALL, FAR)]),
            &["B", "C"],
        )
        .to_bytes(),
    );
    fail(
        "fail_rollback_root_1",
        signed(
            body(1, None, 2, &["A", "B", "C"], &[("X", ALL, FAR)]),
            &["X"],
        )
        .to_bytes(),
    );
    fail(
        "fail_equivocation_root_2",
        signed(
            body(2, Some(&r1), 2, &["A", "B", "C"], &[("X", ALL, FAR)]),
            &["B", "C"],
        )
        .to_bytes(),
    );
    out
}

fn cases() -> Vec<Case> {
    let case = |name, about, roots: &[&'static str], check, error| Case {
        name,
        about,
        roots: roots.to_vec(),
        check,
        error,
    };
    vec![
        case("good_chain", "root 1 (A, B, C; threshold 2; S), root 2 (signed by A and C) revokes S and delegates S2, root 3 (signed by A and B) replaces C by D and adds S3 for notes, expired", &["1.json", "2.json", "3.json"], None, None),
        case("good_pinned_root_1", "root 1 alone", &["1.json"], None, None),
        case("good_new_signing_key_signs", "after root 2, S2 signs index heads", &["1.json", "2.json"], Some(("S2", Role::Index)), None),
        case("good_old_signing_key_before_rotation", "before root 2, S signs bundles", &["1.json"], Some(("S", Role::Bundle)), None),
        case("fail_revoked_key_signing", "after root 2, S (revoked) signs nothing", &["1.json", "2.json"], Some(("S", Role::Index)), Some("not_delegated")),
        case("fail_expired_key_signing", "root 3 delegates S3 for notes until 2026-01-01: expired at now", &["1.json", "2.json", "3.json"], Some(("S3", Role::Note)), Some("expired")),
        case("fail_key_signing_another_role", "S3 may sign notes only", &["1.json", "2.json", "3.json"], Some(("S3", Role::Index)), Some("not_delegated")),
        case("fail_non_canonical_spacing", "root 2 with one space added", &["1.json", "fail_non_canonical_spacing.json"], None, Some("non_canonical")),
        case("fail_non_canonical_member_order", "root 2 with threshold before previous", &["1.json", "fail_non_canonical_member_order.json"], None, Some("non_canonical")),
        case("fail_non_canonical_no_final_newline", "root 2 without its final newline", &["1.json", "fail_non_canonical_no_final_newline.json"], None, Some("non_canonical")),
        case("fail_unknown_role", "a role that does not exist", &["1.json", "fail_unknown_role.json"], None, Some("malformed")),
        case("fail_old_keys_below_threshold", "root 2 signed by A of the old keys (2 needed) and its own D", &["1.json", "fail_old_keys_below_threshold.json"], None, Some("below_threshold")),
        case("fail_new_keys_below_threshold", "root 2 (A, B, D; threshold 2) signed by A and C: one of its own keys", &["1.json", "fail_new_keys_below_threshold.json"], None, Some("below_threshold")),
        case("fail_one_root_key_of_three", "the holder of A alone makes a root 2 with only A (threshold 1) delegating X", &["1.json", "fail_one_root_key_of_three.json"], None, Some("below_threshold")),
        case("fail_stray_signature", "root 2 also signed by X, a key of neither root", &["1.json", "fail_stray_signature.json"], None, Some("stray_signature")),
        case("fail_bad_signature", "root 2 with one signature changed", &["1.json", "fail_bad_signature.json"], None, Some("bad_signature")),
        case("fail_skipped_version", "a root 3 offered after root 1", &["1.json", "fail_skipped_version.json"], None, Some("wrong_version")),
        case("fail_wrong_previous", "a root 2 naming root 2 itself as previous (made on a fork)", &["1.json", "fail_wrong_previous.json"], None, Some("wrong_previous")),
        case("fail_missing_previous", "root 2 without previous", &["1.json", "fail_missing_previous.json"], None, Some("malformed")),
        case("fail_other_publishers_root_1", "a valid root 1 of another publisher (it derives another id)", &["fail_other_publishers_root_1.json"], None, Some("wrong_publisher")),
        case("fail_rollback_root_1", "after root 2, a different root 1 that does not verify", &["1.json", "2.json", "fail_rollback_root_1.json"], None, Some("rollback")),
        case("fail_equivocation_root_2", "after root 2, a different root 2 that B and C signed: evidence", &["1.json", "2.json", "fail_equivocation_root_2.json"], None, Some("equivocation")),
    ]
}

/// The publisher id (from 1.json).
fn publisher() -> PublicKey {
    Root::parse(&files()[0].1).unwrap().publisher_id()
}

/// What the reference verifier concludes for `case`, reading the files from `read`.
fn outcome(case: &Case, read: &dyn Fn(&str) -> Vec<u8>) -> Result<Value, &'static str> {
    let mut chain = Chain::open(&publisher(), None).unwrap();
    for file in &case.roots {
        chain.offer(&read(file)).map_err(|e| e.kind())?;
    }
    let now = time(NOW);
    let authority = chain.authority(now);
    if let Some((name, role)) = case.check {
        let key = public(name);
        if !authority.signers(role).contains(&key) {
            let delegated = chain.current().is_some_and(|r| {
                r.body()
                    .signing_keys
                    .iter()
                    .any(|d| d.key == key && d.roles.contains(&role))
            });
            return Err(if delegated {
                "expired"
            } else {
                "not_delegated"
            });
        }
    }
    let names = |role: Role| -> Vec<String> {
        authority
            .signers(role)
            .iter()
            .map(|k| {
                KEYS.iter()
                    .find(|(n, _)| public(n) == *k)
                    .map_or_else(|| k.to_base64(), |(n, _)| (*n).to_owned())
            })
            .collect()
    };
    Ok(json!({
        "version": chain.version(),
        "root_sha256": chain.current().map(|r| r.id().to_string()),
        "signers": {
            "bundle": names(Role::Bundle),
            "index": names(Role::Index),
            "note": names(Role::Note),
        },
    }))
}

fn expect_json(read: &dyn Fn(&str) -> Vec<u8>) -> Value {
    let keys: serde_json::Map<String, Value> = KEYS
        .iter()
        .map(|(n, seed)| {
            (
                (*n).to_owned(),
                json!({"seed_hex": format!("{seed:02x}").repeat(32), "public": public(n).to_base64()}),
            )
        })
        .collect();
    let cases: Vec<Value> = cases()
        .iter()
        .map(|c| {
            let mut v = json!({
                "name": c.name,
                "about": c.about,
                "roots": c.roots,
            });
            if let Some((k, role)) = c.check {
                v["check"] = json!({"key": k, "role": role.as_str()});
            }
            match (outcome(c, read), c.error) {
                (Ok(result), None) => {
                    v["expect"] = "ok".into();
                    v["result"] = result;
                }
                (_, Some(kind)) => {
                    v["expect"] = "error".into();
                    v["error"] = kind.into();
                }
                (Err(e), None) => panic!("{}: {e}", c.name),
            }
            v
        })
        .collect();
    json!({
        "about": "qasid root chain vector (docs/PROTOCOL.md section 11; README.md here). For each case: trust the publisher id below (derived from 1.json), start with no root held, offer the files of `roots` in order (each must be the next version, or a held version again); the first file refused gives `error`. If all are accepted and `check` is given, ask whether the current root lets key `check.key` sign for role `check.role` at `now`: `not_delegated` if it does not list it for that role, `expired` if it does but its expiry has passed. `result`: the current version, its payload's sha256 and the keys (by name) that sign each role at `now`.",
        "now": NOW,
        "publisher": publisher().to_base64(),
        "keys": keys,
        "cases": cases,
    })
}

#[test]
fn root_vectors_match_the_spec_and_verify_as_expected() {
    let files = files();
    let built = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no file {name}"))
            .1
            .clone()
    };
    let expect = expect_json(&built);
    let expect_text = format!("{}\n", serde_json::to_string_pretty(&expect).unwrap());
    if std::env::var_os("QASID_WRITE_ROOT_VECTORS").is_some() {
        std::fs::create_dir_all(dir()).unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir().join(name), bytes).unwrap();
        }
        std::fs::write(dir().join("expect.json"), &expect_text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(dir().join("expect.json")).unwrap(),
        expect_text,
        "expect.json differs from the vectors built here"
    );
    let on_disk: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "expect.json")
        .collect();
    assert_eq!(
        on_disk.len(),
        files.len(),
        "a root file without a vector here"
    );
    for (name, bytes) in &files {
        assert_eq!(
            &std::fs::read(dir().join(name)).unwrap(),
            bytes,
            "{name} differs from the spec"
        );
    }
    // The checked-in files, read from disk, give the same conclusions.
    let read = |name: &str| std::fs::read(dir().join(name)).unwrap();
    for case in cases() {
        match (outcome(&case, &read), case.error) {
            (Ok(_), None) => {}
            (Err(kind), Some(want)) => assert_eq!(kind, want, "{}", case.name),
            (got, want) => panic!("{}: got {got:?}, expected {want:?}", case.name),
        }
    }
}
