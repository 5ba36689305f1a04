//! `qasid index show`: fetch, verify and print a publisher's index.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use qasid::index::{
    default_state_dir, http_client, update_from_dir, update_from_http, Entry, Freshness, Index,
    MirrorUrl, Outcome, Tracker, Transfer,
};
use qasid::limits::IndexLimits;
use qasid::shown;

use super::{json, print_json, Failure};

/// Inspect a publisher's signed index.
#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    Show(ShowArgs),
}

impl IndexCommand {
    pub fn run(self) -> Result<(), Failure> {
        match self {
            IndexCommand::Show(args) => args.run(),
        }
    }
}

/// Verify a publisher's index from a repo folder or a mirror URL, and print it.
///
/// The index head must be signed by PUBKEY and every piece must match the hash the head
/// gives. The accepted index is remembered in the state folder: an older index offered later
/// is refused (rollback), and two different indexes signed for the same history position are
/// reported as EQUIVOCATION with both saved as evidence (exit 3). An expired index is still
/// shown, with a STALE warning on stderr: it is authentic, but may be old news or a mirror
/// freezing you on it.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid index show --repo site --publisher keys/publisher.pub
  qasid index show --repo https://mirror.example/ --publisher RWQ...base64... --json
  qasid index show --repo site --publisher keys/publisher.pub --all   # full history")]
pub struct ShowArgs {
    /// A repo or mirror folder, or the http(s) URL of one (the folder holding qasid/v1/).
    #[arg(long, value_name = "DIR|URL")]
    repo: String,
    /// The publisher's public key: a publisher.pub file or its one-line base64 form.
    #[arg(long, value_name = "PUBKEY")]
    publisher: String,
    /// Show every entry of the history, marking the current ones, not just the listing.
    #[arg(long)]
    all: bool,
    /// Print a JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Where accepted indexes are remembered [default: $XDG_STATE_HOME/qasid or
    /// ~/.local/state/qasid].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
}

impl ShowArgs {
    pub fn run(self) -> Result<(), Failure> {
        let anchor = qasid::roots::Anchor::from_arg(&self.publisher)
            .map_err(|e| Failure::new(e.class(), e))?;
        let state = match self.state.clone().or_else(default_state_dir) {
            Some(dir) => dir,
            None => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "no state folder: set --state, XDG_STATE_HOME or HOME"
                )))
            }
        };
        let limits = IndexLimits::default();
        std::fs::create_dir_all(&state).map_err(Failure::runtime)?;
        // The publisher's roots first (remembered in the state folder): they say which keys
        // sign its index now.
        let storage = qasid::roots::state_storage(&state, anchor.id());
        let mut chain = qasid::roots::Chain::anchored(&anchor, Some(storage))
            .map_err(|e| Failure::new(e.class(), e))?;
        let now = SystemTime::now();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        let base = if is_url(&self.repo) {
            Some(MirrorUrl::parse(&self.repo, &limits).map_err(Failure::usage)?)
        } else {
            None
        };
        let walk = |chain: &mut qasid::roots::Chain| {
            let walked = match &base {
                Some(base) => {
                    runtime.block_on(qasid::index::walk_roots_http(chain, &http_client(), base))
                }
                None => qasid::index::walk_roots_dir(chain, std::path::Path::new(&self.repo)),
            };
            walked.map_err(|e| Failure::new(e.class(), e))
        };
        let update = |tracker: &mut Tracker| match &base {
            Some(base) => runtime.block_on(update_from_http(tracker, &http_client(), base, now)),
            None => update_from_dir(tracker, std::path::Path::new(&self.repo), now),
        };
        // A publisher without roots is asked for them only when its key alone does not verify
        // the index (it may have adopted a root): a one-key publisher costs no request.
        if chain.version() > 0 {
            walk(&mut chain)?;
        }
        let mut tracker = Tracker::open(&state, &chain.authority(now), limits.clone())?;
        let updated = match update(&mut tracker) {
            Err(e) if chain.version() == 0 && e.class() == qasid::ErrorClass::Verification => {
                walk(&mut chain)?;
                if chain.version() == 0 {
                    return Err(e.into());
                }
                tracker = Tracker::open(&state, &chain.authority(now), limits.clone())?;
                update(&mut tracker)
            }
            other => other,
        };
        let (outcome, transfer) = updated?;
        let index = tracker
            .held()
            .expect("a successful update leaves an accepted index");
        if let Outcome::KeptFresher {
            offered,
            expired_since,
        } = &outcome
        {
            eprintln!(
                "qasid: warning: the source offered index sequence {offered}, expired {} ago; \
                 keeping the fresher sequence {} seen before",
                humantime::format_duration(*expired_since),
                index.head().sequence()
            );
        }
        if let Freshness::Expired { since } = index.freshness(now) {
            eprintln!(
                "qasid: warning: STALE INDEX: expired {} ago. It is authentic, but newer \
                 articles may exist that this source is not showing you.",
                humantime::format_duration(since)
            );
        }
        if self.json {
            print_json(&json_document(index, &outcome, transfer, now, self.all))
        } else {
            print_text(index, self.all);
            Ok(())
        }
    }
}

fn is_url(repo: &str) -> bool {
    repo.starts_with("http://") || repo.starts_with("https://")
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn print_text(index: &Index, all: bool) {
    let head = index.head();
    println!(
        "publisher: {} ({})",
        head.publisher().id(),
        head.publisher().to_base64()
    );
    println!("sequence:  {}", head.sequence());
    println!("issued:    {}", time(head.issued()));
    println!("expires:   {}", time(head.expires()));
    println!("index:     {} (sha256 of index.json)", index.signed().id());
    for mirror in head.mirrors() {
        println!("mirror:    {mirror}");
    }
    let current = index.current();
    println!(
        "articles:  {} listed, {} log entries",
        current.len(),
        head.log().entries()
    );
    if all {
        let listed: std::collections::HashSet<usize> = current.iter().map(|(i, _)| *i).collect();
        for (i, entry) in index.entries().iter().enumerate() {
            let mark = if listed.contains(&i) { '*' } else { ' ' };
            match entry {
                Entry::Add(a) => println!(
                    "{mark} {i:>6} add     {} v{}  {}  {}  {}  {}",
                    a.name(),
                    a.version(),
                    a.date(),
                    a.language(),
                    a.bundle().sha256,
                    shown::line(a.title())
                ),
                Entry::Retract { name } => println!("  {i:>6} retract {name}"),
            }
        }
    } else {
        for (_, a) in current {
            println!(
                "  {} v{}  {}  {}  {}  {}",
                a.name(),
                a.version(),
                a.date(),
                a.language(),
                a.bundle().sha256,
                shown::line(a.title())
            );
        }
    }
}

fn json_document(
    index: &Index,
    outcome: &Outcome,
    transfer: Transfer,
    now: SystemTime,
    all: bool,
) -> serde_json::Value {
    let head = index.head();
    let article = |a: &qasid::index::ArticleVersion| {
        serde_json::json!({
            "name": a.name(),
            "version": a.version(),
            "title": a.title(),
            "date": a.date(),
            "language": a.language(),
            "author": a.author(),
            "sha256": a.bundle().sha256,
            "size": a.bundle().size,
        })
    };
    let current = index.current();
    let mut doc = serde_json::json!({
        "publisher": json::publisher(head.publisher()),
        "sequence": head.sequence(),
        "issued": time(head.issued()),
        "expires": time(head.expires()),
        "stale": matches!(head.freshness(now), Freshness::Expired { .. }),
        "index_sha256": index.signed().id(),
        "mirrors": head.mirrors(),
        "entries": head.log().entries(),
        "pieces": head.log().pieces().len(),
        "updated": matches!(outcome, Outcome::Updated { .. }),
        "fetched_bytes": transfer.head_bytes + transfer.piece_bytes,
        "current": current.iter().map(|(_, a)| article(a)).collect::<Vec<_>>(),
    });
    if let Some(previous) = head.previous() {
        doc["previous"] = serde_json::json!(previous);
    }
    if all {
        let listed: std::collections::HashSet<usize> = current.iter().map(|(i, _)| *i).collect();
        doc["history"] = index
            .entries()
            .iter()
            .enumerate()
            .map(|(i, e)| match e {
                Entry::Add(a) => {
                    let mut v = article(a);
                    v["op"] = "add".into();
                    v["current"] = listed.contains(&i).into();
                    v
                }
                Entry::Retract { name } => serde_json::json!({"op": "retract", "name": name}),
            })
            .collect();
    }
    doc
}
