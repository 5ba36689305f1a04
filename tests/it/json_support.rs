//! Checks a `--json` run against the one documented shape (docs/JSON.md) with the JSON Schema
//! in docs/json-schema/qasid.json, validated by python3-jsonschema (the reference validator:
//! no Rust JSON Schema crate to compile into the test binary).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Reads `[[label, document], ...]` on stdin; prints each error with its document's label.
const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
failed = False
for label, doc in json.load(sys.stdin):
    for e in sorted(validator.iter_errors(doc), key=str):
        failed = True
        print(label + ": at /" + "/".join(map(str, e.absolute_path)) + ": " + e.message)
        print(json.dumps(doc, indent=2))
sys.exit(1 if failed else 0)
"#;

/// Checks the run's stdout as the document of `schema` (e.g. `qasid/fetch/1`): one JSON object,
/// `ok` matching the exit code, the error's `exit_code` equal to the process's, and the human
/// error still on stderr when it failed. Returns the document; validate it against the JSON
/// Schema with [`validate`] (one python run for all of a test's documents).
pub fn check_json(out: &Output, schema: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{schema}: stdout is not one JSON document ({e}):\n{stdout}\nstderr: {stderr}")
    });
    assert_eq!(doc["schema"], schema, "{stdout}");
    let code = out.status.code().expect("exited normally");
    assert_eq!(
        doc["ok"],
        code == 0,
        "ok matches exit code {code}: {stdout}"
    );
    if code != 0 {
        assert_eq!(doc["error"]["exit_code"], code, "{stdout}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("qasid: ") || l.starts_with("error: ")),
            "{schema}: the human error is still on stderr: {stderr}"
        );
    }
    doc
}

/// Validates labelled documents against docs/json-schema/qasid.json with python3-jsonschema.
pub fn validate(docs: &[(String, serde_json::Value)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema/qasid.json");
    let mut python = Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(docs).unwrap();
    python.stdin.take().unwrap().write_all(&input).unwrap();
    let checked = python.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "not the documented shape:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr),
    );
}
