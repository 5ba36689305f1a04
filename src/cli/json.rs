//! The one shape of every `--json` output (docs/JSON.md): a top-level object carrying
//! `"schema": "qasid/<command>/1"` and `"ok"`, an `"error"` object on failure, publishers as
//! `{"key_id", "key"}` objects.
//!
//! A command prints its result with [`print_json`] and returns its failures as usual: when
//! `--json` was given, `main` turns a failure into the same document with `"ok": false` on
//! stdout (the one-line message still goes to stderr). Which command ran, and whether `--json`
//! was given, is read once from the parsed arguments ([`Output::from_matches`]), so a new
//! command joins by having a `--json` flag and calling [`print_json`].

use std::sync::OnceLock;

use qasid::keys::PublicKey;
use qasid::ErrorClass;
use serde_json::{json, Map, Value};

use super::{exit_code, Failure};

/// The version of the shape, the last part of every `schema` value. It changes only when a
/// field is removed, renamed or changes meaning; new fields may appear in any version.
pub const VERSION: u32 = 1;

/// The schema of this run's output, set once by [`Output::from_matches`] when `--json` was
/// given: successful results and failures of the same command carry the same name.
static SCHEMA: OnceLock<String> = OnceLock::new();

/// Whether this run prints JSON, and under which schema name.
#[derive(Debug, Clone, Default)]
pub struct Output {
    schema: Option<String>,
}

impl Output {
    /// `qasid/<command>/1` for the innermost subcommand when it has a `--json` flag that was
    /// given (`index show` is `qasid/index-show/1`); plain text otherwise.
    pub fn from_matches(matches: &clap::ArgMatches) -> Self {
        let mut path = Vec::new();
        let mut current = matches;
        while let Some((name, sub)) = current.subcommand() {
            path.push(name);
            current = sub;
        }
        let wanted = matches!(current.try_get_one::<bool>("json"), Ok(Some(true)));
        Self::for_path(&path, wanted)
    }

    /// The same decision for arguments clap refused: `--json` among them (before a `--`) and a
    /// subcommand path that has such a flag. Scripts then get their usage error as JSON too.
    pub fn from_raw_args(root: &clap::Command, args: &[std::ffi::OsString]) -> Self {
        let mut cmd = root;
        let mut path = Vec::new();
        let mut wanted = false;
        for arg in args.iter().skip(1).filter_map(|a| a.to_str()) {
            if arg == "--" {
                break;
            }
            if arg == "--json" {
                wanted = true;
            } else if let Some(sub) = cmd.find_subcommand(arg) {
                path.push(sub.get_name());
                cmd = sub;
            }
        }
        let has_flag = cmd.get_arguments().any(|a| a.get_id() == "json");
        Self::for_path(&path, wanted && has_flag)
    }

    fn for_path(path: &[&str], wanted: bool) -> Self {
        let schema =
            (wanted && !path.is_empty()).then(|| format!("qasid/{}/{VERSION}", path.join("-")));
        if let Some(s) = &schema {
            let _ = SCHEMA.set(s.clone());
        }
        Self { schema }
    }

    /// Prints a failure as this run's JSON document on stdout, if it is a JSON run.
    pub fn print_failure(&self, class: ErrorClass, message: &str, fields: Option<&Value>) {
        let Some(schema) = &self.schema else { return };
        let mut doc = match fields {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        doc.insert("schema".into(), json!(schema));
        doc.insert("ok".into(), json!(false));
        doc.insert("error".into(), error(class, message));
        // A closed stdout leaves the exit code and the stderr line to tell the story.
        let _ = write(&Value::Object(doc));
    }
}

/// Prints a command's successful result: `fields` (an object) with `schema` and `"ok": true`
/// added. The one function a command with `--json` calls.
pub fn print_json(fields: &impl serde::Serialize) -> Result<(), Failure> {
    let Value::Object(mut doc) =
        serde_json::to_value(fields).map_err(|e| Failure::runtime(std::io::Error::from(e)))?
    else {
        return Err(Failure::runtime(anyhow::anyhow!(
            "internal error: a JSON result must be an object"
        )));
    };
    let schema = SCHEMA
        .get()
        .expect("print_json runs only after the arguments asked for --json");
    doc.insert("schema".into(), json!(schema));
    doc.insert("ok".into(), json!(true));
    write(&Value::Object(doc)).map_err(Failure::runtime)
}

/// A publisher, everywhere in JSON output: its key id (as the text output shows it) and its
/// one-line base64 public key (what `--publisher` accepts).
pub fn publisher(key: &PublicKey) -> Value {
    json!({"key_id": key.id().to_string(), "key": key.to_base64()})
}

/// An error, everywhere in JSON output (the document's own and per-item ones alike).
pub fn error(class: ErrorClass, message: &str) -> Value {
    json!({
        "class": match class {
            ErrorClass::Runtime => "runtime",
            ErrorClass::Usage => "usage",
            ErrorClass::Verification => "verification",
        },
        "exit_code": exit_code(class),
        "message": message,
    })
}

fn write(doc: &Value) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, doc)?;
    writeln!(out)?;
    out.flush()
}
