//! Command-line interface: argument structs and the mapping from outcomes to exit codes.
//!
//! Each subcommand lives in `cli/<name>.rs` as an args struct whose `run` only turns arguments
//! into library calls and prints results. Logs go to stderr, results to stdout. Nothing here
//! decides whether something is authentic: that is the library's job.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use qasid::ErrorClass;

pub use json::{print_json, Output};

mod bundle;
mod completions;
mod demo;
mod fetch;
mod index;
mod json;
mod keygen;
mod man;
mod mirror;
mod note;
mod progress;
mod publish;
mod push;
mod read;
mod reader_page;
mod root;
mod status;
mod sync;
mod verify;

/// Signed news bundles that stay readable where news sites are blocked.
///
/// A publisher signs articles into bundles and publishes a signed index; mirrors copy them;
/// readers fetch from any mirror they can reach and check every byte against the publisher's
/// key. Trust comes only from that key, never from a mirror.
#[derive(Debug, Parser)]
#[command(name = "qasid", version = version_text())]
#[command(
    after_help = "Exit codes: 0 ok, 1 runtime error (I/O, network), 2 usage or bad input, \
3 verification failed (not authentic, not whole).\nFormats: docs/FORMAT.md and docs/PROTOCOL.md."
)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    Keygen(keygen::KeygenArgs),
    Bundle(bundle::BundleArgs),
    Verify(verify::VerifyArgs),
    Read(read::ReadArgs),
    ReaderPage(reader_page::ReaderPageArgs),
    Fetch(fetch::FetchArgs),
    Publish(publish::PublishArgs),
    Push(push::PushArgs),
    Mirror(mirror::MirrorArgs),
    Sync(sync::SyncArgs),
    Status(status::StatusArgs),
    #[command(subcommand)]
    Index(index::IndexCommand),
    #[command(subcommand)]
    Root(root::RootCommand),
    #[command(subcommand)]
    Note(note::NoteCommand),
    Completions(completions::CompletionsArgs),
    Man(man::ManArgs),
}

fn version_text() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (formats: qasid-bundle/1, qasid-index/1)"
    )
}

/// Sets up tracing to stderr. `RUST_LOG` wins over `-v`. Daemons log what they do (info) by
/// default; one-shot commands only warnings, since their results go to stdout.
pub fn init_logging(cli: &Cli) {
    let daemon = match &cli.command {
        Command::Mirror(_) => true,
        Command::Sync(args) => args.is_daemon(),
        _ => false,
    };
    let default = match (cli.verbose, daemon) {
        (0, false) => "warn",
        (0, true) => "info",
        (1, _) => "qasid=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi_on_stderr())
        .init();
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
fn ansi_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Parses the command line and works out whether this run prints JSON. A refused command line
/// exits here (code 2), as JSON on stdout too when `--json` was among the arguments.
pub fn parse() -> (Cli, Output) {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let root = Cli::command();
    let parsed = root.clone().try_get_matches_from(&args).and_then(|mut m| {
        // Before `from_arg_matches_mut`, which takes the values out of the matches.
        let output = Output::from_matches(&m);
        Ok((Cli::from_arg_matches_mut(&mut m)?, output))
    });
    match parsed {
        Ok(ok) => ok,
        Err(e) => {
            if e.use_stderr() {
                // Clap's message up to its usage block, on one line.
                let text = e.to_string();
                let line = text
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                let line = line.trim_start_matches("error: ");
                Output::from_raw_args(&root, &args).print_failure(ErrorClass::Usage, line, None);
            }
            e.exit()
        }
    }
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo(args) => args.run(),
        Command::Keygen(args) => args.run(),
        Command::Bundle(args) => args.run(),
        Command::Verify(args) => args.run(),
        Command::Read(args) => args.run(),
        Command::ReaderPage(args) => args.run(),
        Command::Fetch(args) => args.run(),
        Command::Publish(args) => args.run(),
        Command::Push(args) => args.run(),
        Command::Mirror(args) => args.run(),
        Command::Sync(args) => args.run(),
        Command::Status(args) => args.run(),
        Command::Index(cmd) => cmd.run(),
        Command::Root(cmd) => cmd.run(),
        Command::Note(cmd) => cmd.run(),
        Command::Completions(args) => args.run(),
        Command::Man(args) => args.run(),
    }
}

/// A failed command: what to tell the user and which exit code to use.
#[derive(Debug)]
pub struct Failure {
    class: ErrorClass,
    pub error: anyhow::Error,
    /// What the command can still say in its `--json` document despite failing (the fetch
    /// report of every mirror, a push's per-mirror results).
    json: Option<serde_json::Value>,
}

impl Failure {
    pub fn new(class: ErrorClass, error: impl Into<anyhow::Error>) -> Self {
        Self {
            class,
            error: error.into(),
            json: None,
        }
    }

    /// Adds fields (an object) to the failure's `--json` document.
    pub fn with_json(mut self, fields: serde_json::Value) -> Self {
        self.json = Some(fields);
        self
    }

    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorClass::Usage, error)
    }

    pub fn runtime(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorClass::Runtime, error)
    }

    /// Prints the error chain on one line to stderr (and as the JSON document on stdout when
    /// `--json` was given) and returns the documented exit code.
    pub fn report(self, output: &Output) -> ExitCode {
        // A closed stdout (`qasid ... | head`) is not an error worth a message.
        if let Some(io) = self.error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return ExitCode::SUCCESS;
            }
        }
        let prefix = match self.class {
            ErrorClass::Verification => "verification failed",
            ErrorClass::Usage | ErrorClass::Runtime => "error",
        };
        let line = one_line(&self.error);
        output.print_failure(self.class, &line, self.json.as_ref());
        eprintln!("qasid: {prefix}: {line}");
        ExitCode::from(exit_code(self.class))
    }
}

/// The error and its causes on one line. A cause whose text the message already carries (many
/// errors both show and expose their source) is not repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn exit_code(class: ErrorClass) -> u8 {
    match class {
        ErrorClass::Runtime => 1,
        ErrorClass::Usage => 2,
        ErrorClass::Verification => 3,
    }
}

/// Library errors that know their class convert into failures with `?`.
macro_rules! classified_errors {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Failure {
            fn from(e: $ty) -> Self {
                Failure::new(e.class(), e)
            }
        }
    )*};
}

classified_errors!(
    qasid::keys::KeyError,
    qasid::bundle::BundleError,
    qasid::config::ConfigError,
    qasid::store::StoreError,
    qasid::mirror::MirrorError,
    qasid::index::IndexError,
    qasid::repo::RepoError,
    qasid::sync::SyncError,
    qasid::reader::ReaderError,
    qasid::note::NoteError,
    qasid::daemon::DaemonError,
    qasid::status::StatusError,
    qasid::bucket::BucketError,
);

/// Applies `--store` (a folder or `s3://bucket/prefix`) and `--work` (a bucket store's local
/// work folder) over the configuration's `mirror.store`.
pub fn store_flags(
    mirror: &mut qasid::config::MirrorConfig,
    store: Option<&std::path::Path>,
    work: Option<&std::path::Path>,
) -> Result<(), Failure> {
    match store {
        Some(location) => {
            let text = location
                .to_str()
                .ok_or_else(|| Failure::usage(anyhow::anyhow!("--store: not valid UTF-8")))?;
            mirror.set_store(text, std::path::Path::new(""), work.map(ToOwned::to_owned))?;
        }
        None if work.is_some() && mirror.bucket.is_some() => {
            mirror.store = work.expect("checked").to_owned();
        }
        None if work.is_some() => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--work is only for a bucket store (--store s3://bucket/prefix)"
            )))
        }
        None => {}
    }
    Ok(())
}

/// Reads a `--publisher` value (a key, a key file or a first root file) and returns the
/// publisher id. With a state folder, a first root is kept there, so that later runs start
/// from it.
pub fn publisher_arg(
    arg: &str,
    state: Option<&std::path::Path>,
) -> Result<qasid::keys::PublicKey, Failure> {
    let anchor = qasid::roots::Anchor::from_arg(arg).map_err(|e| Failure::new(e.class(), e))?;
    if let (Some(state), Some(_)) = (state, anchor.first()) {
        let storage = qasid::roots::state_storage(state, anchor.id());
        qasid::roots::Chain::anchored(&anchor, Some(storage))
            .map_err(|e| Failure::new(e.class(), e))?;
    }
    Ok(anchor.id().clone())
}

/// The chain to check something offline against (`verify`, `read FILE`): what the state folder
/// holds for the publisher (from earlier fetches), starting from `arg`.
pub fn offline_chain(
    arg: &str,
    state: Option<&std::path::Path>,
) -> Result<qasid::roots::Chain, Failure> {
    let anchor = qasid::roots::Anchor::from_arg(arg).map_err(|e| Failure::new(e.class(), e))?;
    let storage = state
        .filter(|s| s.join("index").join(anchor.id().hex()).is_dir())
        .map(|s| qasid::roots::state_storage(s, anchor.id()));
    qasid::roots::Chain::anchored(&anchor, storage).map_err(|e| Failure::new(e.class(), e))
}

/// Loads a secret key file, asking for the passphrase only if it is encrypted, and warns when
/// the file is readable by other users.
pub fn load_secret_key(path: &std::path::Path) -> Result<qasid::keys::SecretKey, Failure> {
    let key = qasid::keys::load_secret_key(path, || {
        qasid::keys::passphrase_from_env_or_prompt("Passphrase for the secret key: ", false)
    })?;
    // Only once the file is known to be a secret key: `chmod 600` on a public key is no advice.
    if qasid::keys::key_file_too_open(path) {
        tracing::warn!(
            "{} is readable by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct ShowsItsSource {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(ShowsItsSource {
            path: "nodir",
            source: io,
        });
        assert_eq!(one_line(&e), "nodir: no such file");
    }

    #[test]
    fn distinct_causes_are_chained() {
        let e = anyhow::anyhow!("disk full").context("writing bundle");
        assert_eq!(one_line(&e), "writing bundle: disk full");
    }
}
