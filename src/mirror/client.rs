//! The publisher's side of push: send a repo's verified content to mirrors, asking first what
//! each mirror lacks.
//!
//! Owns the push order (bundles and their `.minisig`, then pieces, then `index.json` last, so a
//! mirror can install the index the moment it arrives) and the per-mirror outcome. The repo's
//! index is verified with the index module before anything is sent, so a publisher never
//! pushes a broken state. Asking is a `HEAD` per object (bounded concurrency); objects are
//! streamed from disk with their exact `Content-Length`. It never prints: progress goes to a
//! caller-supplied [`Progress`] and results are returned.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::content_id::ContentId;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{self, Entry, IndexError, Tracker};
use crate::keys::PublicKey;
use crate::limits::IndexLimits;
use crate::ErrorClass;

/// Most `HEAD`/`PUT` requests in flight to one mirror. 8: enough to hide round trips on a
/// slow link without looking like a flood to a small mirror.
pub const PUSH_CONCURRENCY: usize = 8;

/// One object to push.
#[derive(Debug, Clone)]
struct Item {
    /// Layout path, e.g. `qasid/v1/publishers/<hex>/bundles/<sha>.zip`.
    relative: String,
    file: PathBuf,
    size: u64,
    /// The ETag a mirror holding exactly this object sends (index.json: sha256 of its bytes).
    etag: String,
}

/// What one publisher's repo holds, in push order.
#[derive(Debug, Clone)]
pub struct PushPlan {
    publisher: PublicKey,
    /// Bundles, each followed by its `.minisig` if the repo has one.
    bundles: Vec<Item>,
    pieces: Vec<Item>,
    index: Item,
}

impl PushPlan {
    pub fn publisher(&self) -> &PublicKey {
        &self.publisher
    }

    /// Number of objects in the plan (index included).
    pub fn objects(&self) -> usize {
        self.bundles.len() + self.pieces.len() + 1
    }
}

/// Why a push could not be prepared or failed against a mirror.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The repo's own index does not verify: nothing is pushed.
    #[error("the repo's index does not verify: {0}")]
    Repo(#[source] IndexError),
    /// The repo has no index for this publisher.
    #[error("{0}: no index for this publisher (run `qasid publish` first)")]
    NothingPublished(String),
    /// A request failed in transport.
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    /// The mirror refused our content as not authentic or not whole.
    #[error("{url}: the mirror refused it: {status} {error}: {reason}")]
    Refused {
        url: String,
        status: u16,
        error: String,
        reason: String,
    },
    /// The mirror answered with another error.
    #[error("{url}: the mirror answered {status} {error}: {reason}")]
    Failed {
        url: String,
        status: u16,
        error: String,
        reason: String,
    },
}

impl PushError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PushError::Repo(e) => match e.class() {
                ErrorClass::Runtime => ErrorClass::Runtime,
                _ => ErrorClass::Verification,
            },
            PushError::NothingPublished(_) => ErrorClass::Usage,
            PushError::Refused { .. } => ErrorClass::Verification,
            PushError::Network { .. } | PushError::Failed { .. } => ErrorClass::Runtime,
        }
    }
}

/// Receives progress, in bytes.
pub trait Progress: Send + Sync {
    /// More bytes will be sent than announced so far.
    fn add_total(&self, bytes: u64);
    /// Bytes were sent (or a request finished).
    fn advance(&self, bytes: u64);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn add_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// What a push to one mirror did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSummary {
    /// Objects the mirror lacked and accepted.
    pub sent: usize,
    /// Objects the mirror already had.
    pub skipped: usize,
    /// Body bytes sent.
    pub bytes: u64,
}

/// Verifies the repo's current index for `publisher` and lists what to push.
pub fn plan(repo: &Path, publisher: &PublicKey) -> Result<PushPlan, PushError> {
    let layout = PublisherLayout::new(publisher);
    if !on_disk(repo, &layout.index()).is_file() {
        return Err(PushError::NothingPublished(repo.display().to_string()));
    }
    let mut tracker = Tracker::ephemeral(publisher, IndexLimits::default());
    index::update_from_dir(&mut tracker, repo, SystemTime::now()).map_err(PushError::Repo)?;
    let held = tracker
        .into_held()
        .expect("an accepted update leaves a held index");
    let item = |relative: String, size: u64, etag: String| Item {
        file: on_disk(repo, &relative),
        relative,
        size,
        etag,
    };
    let mut bundles = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in held.entries() {
        let Entry::Add(article) = entry else { continue };
        let b = article.bundle();
        if !seen.insert(b.sha256) {
            continue;
        }
        bundles.push(item(layout.bundle(&b.sha256), b.size, quoted(&b.sha256)));
        let minisig = layout.minisig(&b.sha256);
        if let Ok(bytes) = std::fs::read(on_disk(repo, &minisig)) {
            let etag = quoted(&ContentId::of_bytes(&bytes));
            bundles.push(item(minisig, bytes.len() as u64, etag));
        }
    }
    let log = held.head().log();
    let mut pieces: Vec<Item> = log
        .pieces()
        .iter()
        .map(|p| item(layout.piece(&p.sha256), p.size, quoted(&p.sha256)))
        .collect();
    // The newest batch, which clients holding the previous index fetch, when it is not also
    // one of the pieces covering the log.
    let batch = log.batch();
    if !log.pieces().contains(batch) {
        pieces.push(item(
            layout.piece(&batch.sha256),
            batch.size,
            quoted(&batch.sha256),
        ));
    }
    let envelope = held.signed().envelope();
    let index = item(
        layout.index(),
        envelope.len() as u64,
        quoted(held.signed().id()),
    );
    Ok(PushPlan {
        publisher: publisher.clone(),
        bundles,
        pieces,
        index,
    })
}

fn quoted(id: &ContentId) -> String {
    format!("\"{id}\"")
}

/// Pushes `plan` to the mirror at `base` (the URL under which `qasid/v1/` is served).
pub async fn push(
    client: &reqwest::Client,
    base: &reqwest::Url,
    plan: &PushPlan,
    progress: Arc<dyn Progress>,
) -> Result<PushSummary, PushError> {
    let base = if base.path().ends_with('/') {
        base.clone()
    } else {
        let mut b = base.clone();
        b.set_path(&format!("{}/", base.path()));
        b
    };
    let url_of = |item: &Item| {
        base.join(&item.relative).map_err(|e| PushError::Network {
            url: format!("{base}{}", item.relative),
            reason: e.to_string(),
        })
    };
    let mut summary = PushSummary::default();
    // Ask about everything at once (bounded), then send in order.
    let all: Vec<&Item> = plan
        .bundles
        .iter()
        .chain(&plan.pieces)
        .chain([&plan.index])
        .collect();
    let limit = Arc::new(Semaphore::new(PUSH_CONCURRENCY));
    let mut asks = tokio::task::JoinSet::new();
    for (i, item) in all.iter().enumerate() {
        let url = url_of(item)?;
        let client = client.clone();
        let limit = limit.clone();
        let etag = item.etag.clone();
        asks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            (i, has(&client, url, &etag).await)
        });
    }
    let mut present = vec![false; all.len()];
    while let Some(joined) = asks.join_next().await {
        let (i, result) = joined.map_err(|e| PushError::Network {
            url: base.to_string(),
            reason: e.to_string(),
        })?;
        present[i] = result?;
    }
    let missing: Vec<&Item> = all
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(item, _)| *item)
        .collect();
    summary.skipped = all.len() - missing.len();
    progress.add_total(missing.iter().map(|i| i.size).sum());
    let (index, objects): (Vec<&Item>, Vec<&Item>) = missing
        .into_iter()
        .partition(|i| i.relative == plan.index.relative);
    // Bundles before their minisigs (the mirror checks a minisig against its bundle), then
    // pieces; both are independent of each other, so they go in parallel within a class.
    let (minisigs, rest): (Vec<&Item>, Vec<&Item>) = objects
        .into_iter()
        .partition(|i| i.relative.ends_with(".minisig"));
    for class in [rest, minisigs, index] {
        let mut puts = tokio::task::JoinSet::new();
        for item in class {
            let url = url_of(item)?;
            let client = client.clone();
            let limit = limit.clone();
            let item = item.clone();
            let progress = progress.clone();
            puts.spawn(async move {
                let _permit = limit.acquire_owned().await.expect("never closed");
                let result = put(&client, url, &item).await;
                progress.advance(item.size);
                result.map(|()| item.size)
            });
        }
        while let Some(joined) = puts.join_next().await {
            let bytes = joined.map_err(|e| PushError::Network {
                url: base.to_string(),
                reason: e.to_string(),
            })??;
            summary.sent += 1;
            summary.bytes += bytes;
        }
    }
    Ok(summary)
}

/// Whether the mirror already has the object: `HEAD` answers 200 with the same ETag.
async fn has(client: &reqwest::Client, url: reqwest::Url, etag: &str) -> Result<bool, PushError> {
    let response = client
        .head(url.clone())
        .send()
        .await
        .map_err(|e| network(&url, e))?;
    match response.status() {
        StatusCode::OK => Ok(response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start_matches("W/") == etag)),
        StatusCode::NOT_FOUND => Ok(false),
        status => Err(PushError::Failed {
            url: url.to_string(),
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("").to_owned(),
            reason: "unexpected answer to HEAD".into(),
        }),
    }
}

async fn put(client: &reqwest::Client, url: reqwest::Url, item: &Item) -> Result<(), PushError> {
    let file = tokio::fs::File::open(&item.file)
        .await
        .map_err(|e| PushError::Network {
            url: url.to_string(),
            reason: format!("{}: {e}", item.file.display()),
        })?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        tokio::io::AsyncReadExt::take(file, item.size),
        64 << 10,
    ));
    let response = client
        .put(url.clone())
        .header(reqwest::header::CONTENT_LENGTH, item.size)
        .body(body)
        .send()
        .await
        .map_err(|e| network(&url, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        error: String,
        #[serde(default)]
        reason: String,
    }
    let text = response.text().await.unwrap_or_default();
    let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let (url, status) = (url.to_string(), status.as_u16());
    Err(if status == 422 {
        PushError::Refused {
            url,
            status,
            error: body.error,
            reason: body.reason,
        }
    } else {
        PushError::Failed {
            url,
            status,
            error: body.error,
            reason: body.reason,
        }
    })
}

fn network(url: &reqwest::Url, e: reqwest::Error) -> PushError {
    PushError::Network {
        url: url.to_string(),
        reason: e.without_url().to_string(),
    }
}
