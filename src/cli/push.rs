//! `qasid push`: send a publisher repo's content to mirrors, asking each what it lacks.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use qasid::config;
use qasid::index::layout::PREFIX;
use qasid::keys::PublicKey;
use qasid::mirror::client::{self, NoProgress, Progress, PushError, PushPlan, PushSummary};
use qasid::ErrorClass;

use super::{json, print_json, Failure};

/// Push a repo's bundles, index pieces and index to mirrors that trust its publisher.
///
/// For each publisher in the repo (or each --publisher) and each mirror, asks by hash which
/// objects the mirror lacks (HEAD), sends those (bundles and their .minisig, then pieces), and
/// sends index.json last. The repo's index is verified first. Prints a summary per mirror;
/// exits 1 if any mirror failed, 3 if a mirror refused the content as not authentic.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  qasid push --repo site/ --to http://mirror.example:8080/ --to https://other.example/"
)]
pub struct PushArgs {
    /// The publisher repo (the folder holding qasid/v1/).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// A mirror's base URL (the URL under which qasid/v1/ is served). Repeatable.
    #[arg(long = "to", value_name = "URL", required = true, value_parser = config::parse_mirror_url)]
    to: Vec<reqwest::Url>,
    /// Push only this publisher (a publisher.pub file or one-line base64 key). Repeatable.
    /// Default: every publisher in the repo.
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// The outcome for one mirror and publisher.
struct Outcome {
    mirror: String,
    publisher: PublicKey,
    result: Result<PushSummary, PushError>,
}

impl PushArgs {
    fn publishers(&self) -> Result<Vec<PublicKey>, Failure> {
        if !self.publishers.is_empty() {
            return self
                .publishers
                .iter()
                .map(|p| super::publisher_arg(p, None))
                .collect();
        }
        let dir = self.repo.join(PREFIX).join("publishers");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "{}: {e} (is --repo a publisher repo?)",
                dir.display()
            ))
        })?;
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let pub_file = entry.path().join("publisher.pub");
            if let Ok(text) = std::fs::read_to_string(&pub_file) {
                let key = PublicKey::from_file_text(&text)?;
                // The folder name must be the key it holds, or the file is not this folder's.
                if entry.file_name().to_str() == Some(key.hex().as_str()) {
                    keys.push(key);
                }
            }
        }
        if keys.is_empty() {
            return Err(Failure::usage(anyhow::anyhow!(
                "{}: no publishers found",
                dir.display()
            )));
        }
        keys.sort_by_key(PublicKey::hex);
        Ok(keys)
    }

    pub fn run(self) -> Result<(), Failure> {
        let plans: Vec<PushPlan> = self
            .publishers()?
            .iter()
            .map(|key| client::plan(&self.repo, key))
            .collect::<Result<_, _>>()
            .map_err(|e: PushError| Failure::new(e.class(), e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(Failure::runtime)?;
        let bar = progress_bar(self.json);
        let progress: Arc<dyn Progress> = match &bar {
            Some(bar) => Arc::new(Bar(bar.clone())),
            None => Arc::new(NoProgress),
        };
        let http = qasid::index::http_client();
        let outcomes = runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for mirror in &self.to {
                for plan in &plans {
                    let (http, mirror, plan, progress) =
                        (http.clone(), mirror.clone(), plan.clone(), progress.clone());
                    tasks.spawn(async move {
                        let result = client::push(&http, &mirror, &plan, progress).await;
                        Outcome {
                            mirror: mirror.to_string(),
                            publisher: plan.publisher().clone(),
                            result,
                        }
                    });
                }
            }
            let mut outcomes = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                outcomes.push(joined.expect("push tasks do not panic"));
            }
            outcomes
        });
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mut outcomes = outcomes;
        outcomes
            .sort_by(|a, b| (&a.mirror, a.publisher.hex()).cmp(&(&b.mirror, b.publisher.hex())));
        let worst = outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err())
            .map(PushError::class)
            .max_by_key(|c| match c {
                ErrorClass::Verification => 2,
                ErrorClass::Runtime => 1,
                ErrorClass::Usage => 0,
            });
        let doc =
            serde_json::json!({ "pushes": outcomes.iter().map(push_json).collect::<Vec<_>>() });
        match worst {
            None if self.json => print_json(&doc),
            None => {
                print_text(&outcomes);
                Ok(())
            }
            Some(class) => {
                if !self.json {
                    print_text(&outcomes);
                }
                let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
                Err(Failure::new(
                    class,
                    anyhow::anyhow!("{failed} of {} pushes failed", outcomes.len()),
                )
                .with_json(doc))
            }
        }
    }
}

fn push_json(o: &Outcome) -> serde_json::Value {
    match &o.result {
        Ok(s) => serde_json::json!({
            "mirror": o.mirror,
            "publisher": json::publisher(&o.publisher),
            "ok": true,
            "sent": s.sent,
            "skipped": s.skipped,
            "bytes": s.bytes,
        }),
        Err(e) => serde_json::json!({
            "mirror": o.mirror,
            "publisher": json::publisher(&o.publisher),
            "ok": false,
            "error": json::error(e.class(), &e.to_string()),
        }),
    }
}

fn print_text(outcomes: &[Outcome]) {
    for o in outcomes {
        match &o.result {
            Ok(s) => println!(
                "{}: publisher {}: ok, sent {} objects ({} bytes), {} already there",
                o.mirror,
                o.publisher.id(),
                s.sent,
                s.bytes,
                s.skipped
            ),
            Err(e) => println!("{}: publisher {}: FAILED: {e}", o.mirror, o.publisher.id()),
        }
    }
}

/// A byte progress bar on stderr, only when it is a terminal and output is not JSON.
fn progress_bar(json: bool) -> Option<ProgressBar> {
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("a static template is valid"),
    );
    Some(bar)
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn add_total(&self, bytes: u64) {
        self.0.inc_length(bytes);
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}
