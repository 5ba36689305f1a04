//! The publisher's side of push: send a repo's verified content to mirrors, asking first what
//! each mirror lacks.
//!
//! Owns the push order (bundles and their `.minisig`, then pieces, then `index.json` last, so a
//! mirror can install the index the moment it arrives; when a mirror's bounds on unlisted
//! pieces refuse ours with 429 or 507, the signed index is sent first to name them, then the
//! pieces again) and the per-mirror outcome. The repo's
//! index is verified with the index module before anything is sent, so a publisher never
//! pushes a broken state. Asking is a `HEAD` per object (bounded concurrency); objects are
//! streamed from disk with their exact `Content-Length`, and an object counts as delivered only
//! when the mirror's receipt names its sha256 and size (docs/PROTOCOL.md section 10). Every
//! answer body is read under a size cap and a deadline. It never prints: progress (bytes, as
//! they stream) goes to a caller-supplied [`Progress`] and results are returned.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use reqwest::StatusCode;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Semaphore;

use crate::config::display_url;
use crate::content_id::ContentId;
use crate::index::layout::{on_disk, PublisherLayout};
use crate::index::{self, Entry, IndexError, Tracker};
use crate::keys::PublicKey;
use crate::limits::{IndexLimits, MAX_PUSH_ANSWER_BYTES, PUSH_ANSWER_DEADLINE};
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
    /// sha256 of the file's bytes: what the mirror must confirm it holds.
    sha256: ContentId,
}

impl Item {
    /// The ETag a mirror holding exactly this object sends.
    fn etag(&self) -> String {
        format!("\"{}\"", self.sha256)
    }
}

/// What one publisher's repo holds, in push order.
#[derive(Debug, Clone)]
pub struct PushPlan {
    publisher: PublicKey,
    /// The publisher's roots, version 1 first: pushed first, one at a time, so the mirror
    /// knows the current signing keys before anything they signed arrives.
    roots: Vec<Item>,
    /// Bundles, each followed by its chunk list if its entry names one and its `.minisig` if
    /// the repo has one.
    bundles: Vec<Item>,
    pieces: Vec<Item>,
    index: Item,
    /// The repo's signed mirror note, when it has one: pushed after the index.
    note: Option<Item>,
}

impl PushPlan {
    pub fn publisher(&self) -> &PublicKey {
        &self.publisher
    }

    /// Number of objects in the plan (index included).
    pub fn objects(&self) -> usize {
        self.roots.len()
            + self.bundles.len()
            + self.pieces.len()
            + 1
            + usize::from(self.note.is_some())
    }
}

/// Why a push could not be prepared or failed against a mirror.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The repo's own index does not verify: nothing is pushed.
    #[error("the repo's index does not verify: {0}")]
    Repo(#[source] IndexError),
    /// The repo's roots do not verify: nothing is pushed.
    #[error("the repo's roots do not verify: {0}")]
    Roots(#[source] crate::roots::RootError),
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
    /// The server answered a push with success but did not confirm that it stored exactly the
    /// object sent: a web server or proxy that says 200 to anything, not a qasid mirror.
    #[error(
        "{url}: not a qasid mirror ({what}); nothing was delivered: check the --to URL (it must \
         be a `qasid mirror`, not a static web server or a captive portal)"
    )]
    NotAMirror { url: String, what: String },
}

impl PushError {
    pub fn class(&self) -> ErrorClass {
        match self {
            PushError::Roots(e) => e.class(),
            PushError::Repo(e) => match e.class() {
                ErrorClass::Runtime => ErrorClass::Runtime,
                _ => ErrorClass::Verification,
            },
            PushError::NothingPublished(_) => ErrorClass::Usage,
            PushError::Refused { .. } => ErrorClass::Verification,
            // Learned only from the network (a wrong URL, or a captive portal that may go away),
            // like any other failing mirror.
            PushError::Network { .. } | PushError::Failed { .. } | PushError::NotAMirror { .. } => {
                ErrorClass::Runtime
            }
        }
    }
}

/// Receives progress, in bytes.
pub trait Progress: Send + Sync {
    /// More bytes will be sent than announced so far.
    fn add_total(&self, bytes: u64);
    /// Bytes of a request body were handed to the connection (called per chunk, as the body
    /// streams, so a large object moves the count while it is being sent).
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
    let chain =
        crate::roots::Chain::open(publisher, Some(crate::repo::roots_storage(repo, publisher)))
            .map_err(PushError::Roots)?;
    // The repo's own index, whichever of its keys signed it: the mirror decides what it takes.
    let signers = chain.every_signer();
    let mut tracker = Tracker::ephemeral(&signers, IndexLimits::default());
    index::update_from_dir(&mut tracker, repo, SystemTime::now()).map_err(PushError::Repo)?;
    let held = tracker
        .into_held()
        .expect("an accepted update leaves a held index");
    let item = |relative: String, size: u64, sha256: ContentId| Item {
        file: on_disk(repo, &relative),
        relative,
        size,
        sha256,
    };
    let mut bundles = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in held.entries() {
        let Entry::Add(article) = entry else { continue };
        let b = article.bundle();
        if !seen.insert(b.sha256) {
            continue;
        }
        bundles.push(item(layout.bundle(&b.sha256), b.size, b.sha256));
        if let Some(c) = article.chunks() {
            bundles.push(item(layout.chunks(&c.sha256), c.size, c.sha256));
        }
        let minisig = layout.minisig(&b.sha256);
        if let Ok(bytes) = std::fs::read(on_disk(repo, &minisig)) {
            bundles.push(item(
                minisig,
                bytes.len() as u64,
                ContentId::of_bytes(&bytes),
            ));
        }
    }
    let log = held.head().log();
    let mut pieces: Vec<Item> = log
        .pieces()
        .iter()
        .map(|p| item(layout.piece(&p.sha256), p.size, p.sha256))
        .collect();
    // The newest batch, which clients holding the previous index fetch, when it is not also
    // one of the pieces covering the log.
    let batch = log.batch();
    if !log.pieces().contains(batch) {
        pieces.push(item(layout.piece(&batch.sha256), batch.size, batch.sha256));
    }
    let envelope = held.signed().envelope();
    // The file's own bytes, which the mirror stores and serves as they are.
    let index = item(
        layout.index(),
        envelope.len() as u64,
        ContentId::of_bytes(envelope),
    );
    let roots = chain
        .roots()
        .iter()
        .map(|root| {
            let bytes = root.to_bytes();
            item(
                layout.root(root.version()),
                bytes.len() as u64,
                ContentId::of_bytes(&bytes),
            )
        })
        .collect();
    // The note as the file holds it (the mirror verifies it); read up to one byte past the
    // cap, so an oversized file is sent as such and refused by the mirror's size check.
    let note = read_capped(
        &on_disk(repo, &layout.note()),
        crate::limits::MAX_NOTE_TEXT_BYTES,
    )
    .map(|bytes| {
        item(
            layout.note(),
            bytes.len() as u64,
            ContentId::of_bytes(&bytes),
        )
    });
    Ok(PushPlan {
        publisher: publisher.clone(),
        roots,
        bundles,
        pieces,
        index,
        note,
    })
}

/// At most `cap + 1` bytes of the file at `path`; `None` when it cannot be read (absent).
fn read_capped(path: &Path, cap: u64) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
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
            url: format!("{}{}", display_url(&base), item.relative),
            reason: e.to_string(),
        })
    };
    let mut summary = PushSummary::default();
    // Ask about everything at once (bounded), then send in order.
    let all: Vec<&Item> = plan
        .roots
        .iter()
        .chain(&plan.bundles)
        .chain(&plan.pieces)
        .chain([&plan.index])
        .chain(&plan.note)
        .collect();
    let limit = Arc::new(Semaphore::new(PUSH_CONCURRENCY));
    let mut asks = tokio::task::JoinSet::new();
    for (i, item) in all.iter().enumerate() {
        let url = url_of(item)?;
        let client = client.clone();
        let limit = limit.clone();
        let etag = item.etag();
        asks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            (i, has(&client, url, &etag).await)
        });
    }
    let mut present = vec![false; all.len()];
    while let Some(joined) = asks.join_next().await {
        let (i, result) = joined.map_err(|e| PushError::Network {
            url: display_url(&base),
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
    let (roots, missing): (Vec<&Item>, Vec<&Item>) = missing
        .into_iter()
        .partition(|i| plan.roots.iter().any(|r| r.relative == i.relative));
    // Roots one at a time, in version order: each must chain onto the one before.
    for item in roots {
        put(client, url_of(item)?, item, progress.clone()).await?;
        summary.sent += 1;
        summary.bytes += item.size;
    }
    let (index, objects): (Vec<&Item>, Vec<&Item>) = missing
        .into_iter()
        .partition(|i| i.relative == plan.index.relative);
    // The note last: its mirrors are only worth handing out once the index they serve is in.
    let (note, objects): (Vec<&Item>, Vec<&Item>) = objects
        .into_iter()
        .partition(|i| plan.note.as_ref().is_some_and(|n| n.relative == i.relative));
    // Bundles before their minisigs and chunk lists (the mirror checks those against their
    // bundle), then pieces; both are independent of each other, so they go in parallel within
    // a class.
    let (minisigs, rest): (Vec<&Item>, Vec<&Item>) = objects
        .into_iter()
        .partition(|i| i.relative.ends_with(".minisig") || i.relative.contains("/chunks/"));
    let deferred = put_all(client, &url_of, rest, &limit, &progress, &mut summary).await?;
    put_all(client, &url_of, minisigs, &limit, &progress, &mut summary).await?;
    let mut index = index;
    if !deferred.is_empty() {
        // The mirror's bounds on pieces that no signed index lists are reached (maybe by
        // someone filling them): announcing the signed index, which names our pieces, lets
        // them in. The mirror answers 409 (the pieces are still missing) unless it completed.
        progress.add_total(plan.index.size);
        match put(client, url_of(&plan.index)?, &plan.index, progress.clone()).await {
            Ok(()) => {
                summary.sent += 1;
                summary.bytes += plan.index.size;
                index.clear();
            }
            Err(PushError::Failed { status: 409, .. }) => {}
            Err(e) => return Err(e),
        }
        let pieces = deferred.into_iter().map(|(item, _)| item).collect();
        let refused = put_all(client, &url_of, pieces, &limit, &progress, &mut summary).await?;
        if let Some((_, e)) = refused.into_iter().next() {
            return Err(e);
        }
    }
    put_all(client, &url_of, index, &limit, &progress, &mut summary).await?;
    put_all(client, &url_of, note, &limit, &progress, &mut summary).await?;
    Ok(summary)
}

/// Sends `items` in parallel (bounded by `limit`), counting each delivery. Returns the pieces
/// the mirror refused because its staging bounds are reached (429 or 507): they may be sent
/// again once the mirror has seen the signed index that lists them. Any other failure ends the
/// push.
async fn put_all<'a>(
    client: &reqwest::Client,
    url_of: &impl Fn(&Item) -> Result<reqwest::Url, PushError>,
    items: Vec<&'a Item>,
    limit: &Arc<Semaphore>,
    progress: &Arc<dyn Progress>,
    summary: &mut PushSummary,
) -> Result<Vec<(&'a Item, PushError)>, PushError> {
    let mut puts = tokio::task::JoinSet::new();
    for (i, item) in items.iter().enumerate() {
        let url = url_of(item)?;
        let client = client.clone();
        let limit = limit.clone();
        let owned = (*item).clone();
        let progress = progress.clone();
        puts.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            (i, put(&client, url, &owned, progress).await)
        });
    }
    let mut refused = Vec::new();
    while let Some(joined) = puts.join_next().await {
        let (i, result) = joined.map_err(|e| PushError::Network {
            url: "a push task".to_owned(),
            reason: e.to_string(),
        })?;
        let item = items[i];
        match result {
            Ok(()) => {
                summary.sent += 1;
                summary.bytes += item.size;
            }
            Err(
                e @ PushError::Failed {
                    status: 429 | 507, ..
                },
            ) if item.relative.contains("/pieces/") => {
                refused.push((item, e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(refused)
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
            url: display_url(&url),
            status: status.as_u16(),
            error: status.canonical_reason().unwrap_or("").to_owned(),
            reason: "unexpected answer to HEAD".into(),
        }),
    }
}

async fn put(
    client: &reqwest::Client,
    url: reqwest::Url,
    item: &Item,
    progress: Arc<dyn Progress>,
) -> Result<(), PushError> {
    let file = tokio::fs::File::open(&item.file)
        .await
        .map_err(|e| PushError::Network {
            url: display_url(&url),
            reason: format!("{}: {e}", item.file.display()),
        })?;
    let counted = Counted {
        inner: tokio::io::AsyncReadExt::take(file, item.size),
        progress,
    };
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        counted,
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
    let html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("text/html"));
    let answer = read_answer(response).await;
    if status.is_success() {
        let answer = answer.map_err(|e| network(&url, e))?;
        return confirm(client, &url, item, status, html, &answer).await;
    }
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        error: String,
        #[serde(default)]
        reason: String,
    }
    // An error answer that cannot be read whole is still an error: say what is known.
    let answer = answer.unwrap_or_default();
    let body = match serde_json::from_slice::<ErrorBody>(&answer.bytes) {
        Ok(body) if !answer.cut => body,
        _ => ErrorBody {
            error: status.canonical_reason().unwrap_or("").to_owned(),
            reason: if answer.cut {
                format!("an answer longer than {MAX_PUSH_ANSWER_BYTES} bytes (not read)")
            } else if html || answer.bytes.trim_ascii_start().starts_with(b"<") {
                "an HTML page, not a qasid mirror's answer (wrong URL?)".to_owned()
            } else {
                "not a qasid mirror's answer (wrong URL?)".to_owned()
            },
        },
    };
    let (url, status) = (display_url(&url), status.as_u16());
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

/// What a qasid mirror answers to a successful push (docs/PROTOCOL.md, "Pushing").
#[derive(serde::Deserialize)]
struct Receipt {
    /// `"stored"` or `"present"`.
    status: String,
    /// sha256 (hex) and size of the object the mirror now holds. Absent from mirrors older
    /// than the receipt; then the object is checked with a `HEAD`.
    sha256: Option<String>,
    size: Option<u64>,
}

/// Counts an object as delivered only when the mirror's receipt names exactly it (or, for a
/// mirror that predates receipts, when a `HEAD` afterwards finds it there).
async fn confirm(
    client: &reqwest::Client,
    url: &reqwest::Url,
    item: &Item,
    status: StatusCode,
    html: bool,
    answer: &Answer,
) -> Result<(), PushError> {
    let not_a_mirror = |what: String| PushError::NotAMirror {
        url: display_url(url),
        what,
    };
    let receipt = match serde_json::from_slice::<Receipt>(&answer.bytes) {
        Ok(r) if !answer.cut && (r.status == "stored" || r.status == "present") => r,
        _ => {
            let page = if html || answer.bytes.trim_ascii_start().starts_with(b"<") {
                "an HTML page"
            } else if answer.bytes.is_empty() {
                "an empty body"
            } else {
                "something that is not a push receipt"
            };
            return Err(not_a_mirror(format!(
                "it answered the upload with {} and {page}",
                status.as_u16()
            )));
        }
    };
    match (&receipt.sha256, receipt.size) {
        (Some(sha256), Some(size)) => {
            if *sha256 == item.sha256.to_string() && size == item.size {
                Ok(())
            } else {
                Err(PushError::Failed {
                    url: display_url(url),
                    status: status.as_u16(),
                    error: "wrong receipt".to_owned(),
                    reason: format!(
                        "the mirror confirmed another object (sha256 {sha256}, {size} bytes) \
                         than the one sent (sha256 {}, {} bytes)",
                        item.sha256, item.size
                    ),
                })
            }
        }
        _ if has(client, url.clone(), &item.etag()).await? => Ok(()),
        _ => Err(not_a_mirror(format!(
            "it answered the upload with {} but does not serve the object afterwards",
            status.as_u16()
        ))),
    }
}

/// An answer body, read up to [`MAX_PUSH_ANSWER_BYTES`].
#[derive(Default)]
struct Answer {
    bytes: Vec<u8>,
    /// The body was longer than the cap, or did not end within [`PUSH_ANSWER_DEADLINE`]:
    /// `bytes` holds its beginning only.
    cut: bool,
}

/// Reads an answer body under a size cap and a deadline, so that a hostile or broken server
/// (an endless error page, a trickle) costs a bounded amount of memory and time.
async fn read_answer(mut response: reqwest::Response) -> Result<Answer, reqwest::Error> {
    let mut answer = Answer::default();
    let read = async {
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_PUSH_ANSWER_BYTES - answer.bytes.len();
            if chunk.len() > room {
                answer.bytes.extend_from_slice(&chunk[..room]);
                answer.cut = true;
                break;
            }
            answer.bytes.extend_from_slice(&chunk);
        }
        Ok::<_, reqwest::Error>(())
    };
    match tokio::time::timeout(PUSH_ANSWER_DEADLINE, read).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => answer.cut = true,
    }
    Ok(answer)
}

/// Reports request body bytes to a [`Progress`] as the body streams out.
struct Counted<R> {
    inner: R,
    progress: Arc<dyn Progress>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            this.progress.advance(read as u64);
        }
        result
    }
}

fn network(url: &reqwest::Url, e: reqwest::Error) -> PushError {
    PushError::Network {
        url: display_url(url),
        reason: crate::index::reqwest_error_chain(e),
    }
}
