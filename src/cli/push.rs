//! `qasid push`: send a publisher repo's content to mirrors, asking each what it lacks.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use qasid::bucket::upload::{self, HeadOutcome, Publication, UploadError};
use qasid::bucket::{Access, Bucket, BucketUrl};
use qasid::config::{self, Keep};
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
    /// A mirror's base URL (the URL under which qasid/v1/ is served), or an S3-compatible
    /// bucket s3://bucket/prefix (credentials and endpoint from AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, an AWS profile (AWS_PROFILE), or
    /// [s3] of --config). Repeatable.
    #[arg(long = "to", value_name = "URL", required = true, value_parser = parse_target)]
    to: Vec<Target>,
    /// mirrors.toml whose [s3] endpoint, region and path_style apply to s3:// targets.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// For s3:// targets: list the bucket and check every object's size and ETag against the
    /// repo's, replacing what differs (objects corrupted or deleted behind qasid's back).
    /// Without it, what the bucket's verified index.json lists counts as present.
    #[arg(long)]
    check_bucket: bool,
    /// Push only this publisher (a publisher.pub file or one-line base64 key). Repeatable.
    /// Default: every publisher in the repo.
    #[arg(long = "publisher", value_name = "PUBKEY")]
    publishers: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// Where to push: a mirror or a bucket.
#[derive(Debug, Clone)]
enum Target {
    Mirror(reqwest::Url),
    Bucket(BucketUrl),
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text.starts_with(qasid::bucket::SCHEME) {
        BucketUrl::parse(text)
            .map(Target::Bucket)
            .map_err(|e| e.to_string())
    } else {
        config::parse_mirror_url(text).map(Target::Mirror)
    }
}

/// The outcome for one mirror and publisher.
struct Outcome {
    mirror: String,
    publisher: PublicKey,
    result: Result<PushSummary, PushFailure>,
    /// For a bucket: the sequence of the index.json it now serves.
    index: Option<u64>,
}

/// Why a push to one target failed.
#[derive(Debug, thiserror::Error)]
enum PushFailure {
    #[error("{0}")]
    Mirror(#[from] PushError),
    #[error("{0}")]
    Bucket(#[from] UploadError),
    #[error(
        "the bucket holds a newer index (sequence {held}) than the repo (sequence {ours}): \
         nothing written"
    )]
    BucketNewer { held: u64, ours: u64 },
}

impl PushFailure {
    fn class(&self) -> ErrorClass {
        match self {
            PushFailure::Mirror(e) => e.class(),
            PushFailure::Bucket(e) => e.class(),
            PushFailure::BucketNewer { .. } => ErrorClass::Verification,
        }
    }
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
        let keys = self.publishers()?;
        let buckets: Vec<BucketUrl> = self
            .to
            .iter()
            .filter_map(|t| match t {
                Target::Bucket(b) => Some(b.clone()),
                Target::Mirror(_) => None,
            })
            .collect();
        let mirrors: Vec<reqwest::Url> = self
            .to
            .iter()
            .filter_map(|t| match t {
                Target::Mirror(m) => Some(m.clone()),
                Target::Bucket(_) => None,
            })
            .collect();
        let settings = match &self.config {
            Some(path) => config::Config::load(path)?.s3,
            None => qasid::bucket::Settings::default(),
        };
        // The repo is verified (index, roots, and every bundle before it is uploaded) before
        // anything reaches a bucket.
        let publications: Vec<Arc<Publication>> = if buckets.is_empty() {
            Vec::new()
        } else {
            keys.iter()
                .map(|key| upload::from_folder(&self.repo, key, Keep::All).map(Arc::new))
                .collect::<Result<_, _>>()
                .map_err(|e| Failure::new(e.class(), e))?
        };
        let plans: Vec<PushPlan> = if mirrors.is_empty() {
            Vec::new()
        } else {
            keys.iter()
                .map(|key| client::plan(&self.repo, key))
                .collect::<Result<_, _>>()
                .map_err(|e: PushError| Failure::new(e.class(), e))?
        };
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
            for mirror in &mirrors {
                for plan in &plans {
                    let (http, mirror, plan, progress) =
                        (http.clone(), mirror.clone(), plan.clone(), progress.clone());
                    tasks.spawn(async move {
                        let result = client::push(&http, &mirror, &plan, progress).await;
                        Outcome {
                            mirror: mirror.to_string(),
                            publisher: plan.publisher().clone(),
                            result: result.map_err(PushFailure::from),
                            index: None,
                        }
                    });
                }
            }
            let mode = match self.check_bucket {
                true => upload::Mode::Full,
                false => upload::Mode::Delta,
            };
            for url in &buckets {
                for p in &publications {
                    let (url, p, settings) = (url.clone(), p.clone(), settings.clone());
                    tasks.spawn(async move {
                        let (result, index) = push_bucket(&url, &settings, &p, mode).await;
                        Outcome {
                            mirror: url.to_string(),
                            publisher: p.publisher.clone(),
                            result,
                            index,
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
            .map(PushFailure::class)
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

/// Pushes one publication to one bucket; the index sequence the bucket then serves.
async fn push_bucket(
    url: &BucketUrl,
    settings: &qasid::bucket::Settings,
    p: &Publication,
    mode: upload::Mode,
) -> (Result<PushSummary, PushFailure>, Option<u64>) {
    let bucket = match Bucket::connect(url, settings, Access::Write).await {
        Ok(b) => b,
        Err(e) => return (Err(PushFailure::Bucket(e.into())), None),
    };
    let ours = p.index.head().sequence();
    match upload::publish(&bucket, p, mode).await {
        Ok(done) => {
            let summary = PushSummary {
                sent: done.objects as usize,
                skipped: done.present as usize,
                bytes: done.bytes,
            };
            match done.head {
                HeadOutcome::Written { sequence } => (Ok(summary), Some(sequence)),
                HeadOutcome::Unchanged => (Ok(summary), Some(ours)),
                HeadOutcome::BucketNewer { held } => {
                    (Err(PushFailure::BucketNewer { held, ours }), Some(held))
                }
            }
        }
        Err(e) => (Err(e.into()), None),
    }
}

fn push_json(o: &Outcome) -> serde_json::Value {
    match &o.result {
        Ok(s) => {
            let mut doc = serde_json::json!({
                "mirror": o.mirror,
                "publisher": json::publisher(&o.publisher),
                "ok": true,
                "sent": s.sent,
                "skipped": s.skipped,
                "bytes": s.bytes,
            });
            if let Some(sequence) = o.index {
                doc["index_sequence"] = sequence.into();
            }
            doc
        }
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
