//! The reader: each trusted publisher's freshest verified index, and its bundles, from whichever
//! mirrors answer, however many of them are blocked, slow or lying.
//!
//! Owns the races (every mirror is asked for every index at once; after the first valid answer
//! a short window for a fresher one; the highest sequence wins), hedged bundle downloads (the
//! fastest mirror first, the next one too when bytes stop coming, the first verified copy wins
//! and the rest are cancelled), resuming interrupted downloads, the known-mirrors list learned
//! from signed indexes, and the per-mirror [`Report`]. History rules (rollback, equivocation,
//! freshness) are the index module's [`Tracker`]'s. Every byte passes the same checks whichever
//! transport (HTTP, proxy, folder) or fallback it came through: there is no path around them
//! (APT's CVE-2018-0501 was a fallback path that skipped one).
//!
//! It never writes an unverified bundle where it can be read: bytes go to a partial file in
//! the state folder, and only [`crate::index::receive_bundle`] (size, sha256, then the bundle
//! verifier) produces the file that is renamed into the output folder. It never takes a key, a
//! size or a mirror URL from a mirror unless a trusted key signed it, never uses a mirror again
//! in a run once it lied, and never prints: callers get [`PublisherUpdate`]s, a
//! [`SavedBundle`] and a [`Report`].
//!
//! State folder ([`ReaderOptions::state_dir`], by default [`crate::index::default_state_dir`]):
//! `index/<pubkey-hex>/` and `evidence/` (the trackers'), `known-mirrors.txt` (`known`),
//! `partial/<sha256>.part` (interrupted downloads, `download`).
//!
//! - `mirrors`: where a mirror is, what happened to it, the report.
//! - `transport`: HTTP clients (proxy, timeouts) and capped reads from URLs and folders.
//! - `race`: the index race, and settling on one verified index per publisher.
//! - `download`: the hedged, resumable bundle download.
//! - `known`: the known-mirrors file.
//! - `notes`: mirrors from signed mirror notes (`--note`, `dns:` names, note URLs).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::bundle::VerifiedBundle;
use crate::config::ReaderConfig;
use crate::content_id::ContentId;
use crate::index::{
    receive_bundle, ArticleVersion, BundleFetchError, Entry, Freshness, Index, IndexError,
    MirrorUrl, Outcome, Tracker,
};
use crate::keys::{KeyId, PublicKey};
use crate::limits::{BundleLimits, IndexLimits};
use crate::roots::{self, Authority, Chain, RootError};
use crate::ErrorClass;

mod download;
mod known;
mod mirrors;
mod notes;
mod race;
mod segmented;
mod transport;

pub use known::MAX_KNOWN_MIRRORS;
pub use mirrors::{Fate, MirrorLocation, MirrorReport, MirrorSpec, Origin, Report};
pub use notes::{
    gather_notes, read_note_file, AcceptedNote, GatheredNotes, NoteFailure, NoteOutcome,
};

use mirrors::Mirror;

/// Longest wait for a TCP (or proxy) connection. 15 s: a Tor circuit can take several seconds
/// to build; a blocked address usually fails faster or hangs for ever, which is what this bounds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for the next byte of a response (headers included). 30 s: slow links stall for
/// seconds, a tarpit for ever. Racing and hedging mean a reader rarely waits this long.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long, from the start of the index race, a publisher that has no valid answer yet waits
/// for mirrors that have answered nothing at all, once another publisher's race has closed.
/// 5 s: a mirror reached over Tor answers in one to three seconds once its circuit is up, so
/// a slow mirror that alone carries a publisher is waited for; a tarpit (accepts, never
/// answers) costs this instead of the 30 s read timeout.
pub const SILENT_MIRROR_GRACE: Duration = Duration::from_secs(5);

/// What a reader run uses. [`ReaderOptions::new`] fills in the documented defaults.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Mirrors in the order given (flags, then config); known mirrors are added after them.
    pub mirrors: Vec<MirrorSpec>,
    /// The trusted publishers: nothing signed by another key is accepted.
    pub publishers: Vec<PublicKey>,
    /// Where accepted indexes, known mirrors and partial downloads are kept.
    pub state_dir: PathBuf,
    /// Proxy for every HTTP mirror without its own.
    pub proxy: Option<reqwest::Url>,
    /// No connection may leave except through a proxy: every HTTP mirror without a proxy of its
    /// own (or [`ReaderOptions::proxy`]) goes through the strictest proxy configured, a proxy
    /// that resolves names locally (`socks5://`) is refused, and so is a run without any proxy.
    /// Anything else the reader contacts (notes, learned mirrors) follows [`Reader::proxy_for`].
    pub proxy_only: bool,
    /// After the first valid index, how long to wait for a fresher one.
    pub race_window: Duration,
    /// How long a bundle download may go without moving (bytes at 4 KiB/s or more) before the
    /// next mirror is asked too.
    pub hedge_delay: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub index_limits: IndexLimits,
    pub bundle_limits: BundleLimits,
    /// Mirror notes to read before the race ([`gather_notes`]); their mirrors join it.
    pub notes: Vec<crate::note::source::NoteSpec>,
    /// Resolver for `dns:` notes (default: the system's; with a proxy, DNS over HTTPS only).
    pub dns_server: Option<crate::note::dns::DnsServer>,
    /// Endpoint, region and addressing for `s3://` mirrors (`[s3]`; `AWS_*` override it).
    pub s3: crate::bucket::Settings,
}

impl ReaderOptions {
    /// Options with the defaults of [`ReaderConfig`] and the timeouts above.
    pub fn new(mirrors: Vec<MirrorSpec>, publishers: Vec<PublicKey>, state_dir: PathBuf) -> Self {
        let defaults = ReaderConfig::default();
        Self {
            mirrors,
            publishers,
            state_dir,
            proxy: defaults.proxy,
            proxy_only: defaults.proxy_only,
            race_window: defaults.race_window,
            hedge_delay: defaults.hedge_delay,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            index_limits: IndexLimits::default(),
            bundle_limits: BundleLimits::default(),
            notes: Vec::new(),
            dns_server: None,
            s3: crate::bucket::Settings::default(),
        }
    }
}

/// Which article to fetch: `NAME` (the current version) or `NAME@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArticleRequest {
    pub name: String,
    pub version: Option<u64>,
}

impl FromStr for ArticleRequest {
    type Err = ReaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ReaderError::BadArticle(s.to_owned());
        let (name, version) = match s.split_once('@') {
            Some((name, v)) => (
                name,
                Some(v.parse::<u64>().ok().filter(|&v| v >= 1).ok_or_else(bad)?),
            ),
            None => (s, None),
        };
        if !crate::manifest::is_valid_bundle_name(name) {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            version,
        })
    }
}

impl fmt::Display for ArticleRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One publisher's verified index after a race.
#[derive(Debug, Clone)]
pub struct PublisherIndex {
    pub publisher: PublicKey,
    pub index: Index,
    /// What the accepted answer did to the stored history.
    pub outcome: Outcome,
    /// The fastest mirror that served the accepted index (or the stored one, kept as fresher).
    pub source: String,
}

/// The result of the race for one publisher.
#[derive(Debug)]
pub struct PublisherUpdate {
    pub publisher: PublicKey,
    pub result: Result<PublisherIndex, ReaderError>,
}

/// A bundle saved into the output folder, verified.
#[derive(Debug)]
pub struct SavedBundle {
    /// `<out>/<name>-v<version>.zip`.
    pub path: PathBuf,
    pub publisher: PublicKey,
    pub article: ArticleVersion,
    pub bundle: VerifiedBundle,
    /// The mirror it came from; `None` if a verified copy was already there.
    pub source: Option<String>,
    /// Bytes that an earlier, interrupted download had already fetched (resumed with `Range`).
    pub resumed_from: u64,
}

/// How far a bundle download is: the most bytes any mirror has delivered so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub received: u64,
    pub total: u64,
}

/// Called as a download advances (from the download's task; keep it quick).
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// Something the user must hear about even though the run succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// The newest authentic index is past its expiry: newer articles may exist that the
    /// reachable mirrors are not showing (a mirror, or a censor, may be freezing the reader).
    Expired {
        publisher: KeyId,
        sequence: u64,
        since: Duration,
    },
    /// A mirror offered a newer index that has already expired; the fresher stored one is kept.
    KeptFresher {
        publisher: KeyId,
        offered: u64,
        held: u64,
    },
    /// The known-mirrors file could not be read or written (learned mirrors may be lost).
    KnownMirrors { path: PathBuf, reason: String },
    /// A proxy some mirrors go through does not answer; those mirrors will fail.
    ProxyDown { proxy: String, problem: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Expired {
                publisher,
                sequence,
                since,
            } => write!(
                f,
                "STALE INDEX: the newest index of publisher {publisher} that any mirror could \
                 prove (sequence {sequence}) expired {} ago. It is authentic, but newer \
                 articles may exist that these mirrors are not showing you.",
                humantime::format_duration(Duration::from_secs(since.as_secs()))
            ),
            Warning::ProxyDown { proxy, problem } => write!(
                f,
                "the proxy {proxy} {problem}: the mirrors behind it will fail; start it, or \
                 fix --proxy or the config's proxy"
            ),
            Warning::KeptFresher {
                publisher,
                offered,
                held,
            } => write!(
                f,
                "publisher {publisher}: a mirror offered index sequence {offered}, which has \
                 expired; keeping the fresher sequence {held} seen before"
            ),
            Warning::KnownMirrors { path, reason } => {
                write!(f, "known mirrors file {}: {reason}", path.display())
            }
        }
    }
}

/// Why a reader run could not deliver.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// No mirror to ask.
    #[error(
        "no mirrors: give --mirror URL|DIR, or list them under [reader] mirrors in the config"
    )]
    NoMirrors,
    /// No trusted publisher key.
    #[error("no trusted publisher: give --publisher PUBKEY, or [[publisher]] in the config")]
    NoPublishers,
    /// A mirror location that is neither an http(s) URL nor a folder.
    #[error("mirror {text:?}: {reason}")]
    BadMirror { text: String, reason: String },
    /// `proxy_only` without any proxy to send through, or with one that resolves names locally.
    #[error("proxy-only: {0}")]
    ProxyOnly(String),
    /// A proxy the HTTP client refused.
    #[error("proxy {proxy}: {reason}")]
    BadProxy { proxy: String, reason: String },
    /// Every mirror goes through a proxy that does not answer (or does not speak its
    /// protocol): the proxy is the failure, not the mirrors.
    #[error("the proxy {proxy} {problem}: start it, or fix --proxy or the config's proxy")]
    ProxyDown { proxy: String, problem: String },
    /// Not `NAME` or `NAME@VERSION`.
    #[error("{0:?} is not an article NAME or NAME@VERSION (a-z, 0-9 and -; version ≥ 1)")]
    BadArticle(String),
    /// The stored state (held indexes) could not be opened or updated.
    /// The publisher's roots: a held root that no longer verifies, or root equivocation
    /// (evidence saved).
    #[error("publisher roots: {0}")]
    Root(#[source] RootError),
    #[error("index state")]
    State(#[source] IndexError),
    /// A local file could not be read or written.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every mirror failed at runtime (timeouts, refused connections, errors); none of them
    /// answered with anything inauthentic.
    #[error("no mirror could be reached for publisher {publisher}'s index: {summary}")]
    Unreachable { publisher: KeyId, summary: String },
    /// No mirror gave an authentic, current index: the answers were forged, tampered, or
    /// older than the history already seen (rollback).
    #[error("no mirror gave an authentic, current index of publisher {publisher}: {summary}")]
    NoAuthenticIndex { publisher: KeyId, summary: String },
    /// The index history is broken beyond a mirror's fault (equivocation: the publisher's key
    /// signed two histories; evidence saved).
    #[error(transparent)]
    Index(IndexError),
    /// No trusted publisher's index lists the article.
    #[error("{request} is not listed in the index of any trusted publisher{}", unchecked_note(.unchecked))]
    NotListed {
        request: ArticleRequest,
        /// Publishers whose index could not be obtained, and why it failed (worst class).
        unchecked: Vec<KeyId>,
        unchecked_class: Option<ErrorClass>,
    },
    /// Several trusted publishers list an article of that name.
    #[error("{name} is listed by several trusted publishers ({}); pass the one you mean with --publisher", list(.publishers))]
    Ambiguous {
        name: String,
        publishers: Vec<KeyId>,
    },
    /// Every mirror that delivered the bundle sent bytes that do not match the signed sha256.
    #[error("bundle {sha256} of {article}: no mirror delivered the signed bytes: {summary}")]
    BundleNotAuthentic {
        article: String,
        sha256: ContentId,
        summary: String,
    },
    /// No mirror could deliver the bundle (timeouts, refused connections, missing files).
    #[error("bundle {sha256} of {article}: no mirror could deliver it: {summary}")]
    BundleUnreachable {
        article: String,
        sha256: ContentId,
        summary: String,
    },
    /// The bytes matched the signed hash but are not a valid bundle of this article: the
    /// publisher signed a broken bundle (every mirror would serve the same bytes), or a local
    /// file could not be written.
    #[error("bundle of {article}")]
    Bundle {
        article: String,
        #[source]
        source: Box<BundleFetchError>,
    },
}

fn unchecked_note(unchecked: &[KeyId]) -> String {
    if unchecked.is_empty() {
        String::new()
    } else {
        format!(
            " that could be checked (no index obtained from {})",
            list(unchecked)
        )
    }
}

fn list(ids: &[KeyId]) -> String {
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ReaderError {
    /// No mirror delivered the bundle: [`ReaderError::BundleNotAuthentic`] when one of them
    /// sent bytes that failed the signed hashes, else [`ReaderError::BundleUnreachable`].
    pub(crate) fn bundle_failed(
        inauthentic: bool,
        article: String,
        sha256: ContentId,
        summary: String,
    ) -> Self {
        if inauthentic {
            ReaderError::BundleNotAuthentic {
                article,
                sha256,
                summary,
            }
        } else {
            ReaderError::BundleUnreachable {
                article,
                sha256,
                summary,
            }
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            ReaderError::NoMirrors
            | ReaderError::NoPublishers
            | ReaderError::BadMirror { .. }
            | ReaderError::BadProxy { .. }
            | ReaderError::ProxyOnly(_)
            | ReaderError::BadArticle(_)
            | ReaderError::Ambiguous { .. } => ErrorClass::Usage,
            ReaderError::NotListed {
                unchecked_class, ..
            } => unchecked_class.unwrap_or(ErrorClass::Usage),
            ReaderError::State(e) | ReaderError::Index(e) => e.class(),
            ReaderError::Root(e) => e.class(),
            ReaderError::Io { .. }
            | ReaderError::ProxyDown { .. }
            | ReaderError::Unreachable { .. }
            | ReaderError::BundleUnreachable { .. } => ErrorClass::Runtime,
            ReaderError::NoAuthenticIndex { .. } | ReaderError::BundleNotAuthentic { .. } => {
                ErrorClass::Verification
            }
            ReaderError::Bundle { source, .. } => source.class(),
        }
    }

    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ReaderError::Io { path, source }
    }
}

/// A reader run: the mirrors with what happened to each, and one tracker per publisher.
pub struct Reader {
    options: ReaderOptions,
    mirrors: Vec<Mirror>,
    trackers: Vec<Tracker>,
    /// The proxy for anything without a proxy of its own (see [`Reader::proxy_for`]).
    strictest: Option<reqwest::Url>,
    /// Per publisher, its verified chain of roots (stored in the state folder).
    chains: Vec<Chain>,
    /// Per publisher, after [`Reader::update`]: mirrors in the order to ask for bundles.
    ranked: Vec<Vec<usize>>,
    warnings: Vec<Warning>,
    /// Each proxy in use with the number of mirrors behind it, and the number of mirrors
    /// reached without one (see [`Reader::check_proxies`]).
    proxies: Vec<(reqwest::Url, usize)>,
    unproxied: usize,
}

impl Reader {
    /// Opens the state (re-verifying held indexes), adds the known mirrors after the given
    /// ones, and builds one HTTP client per proxy.
    pub fn open(options: ReaderOptions) -> Result<Self, ReaderError> {
        let mut publishers: Vec<PublicKey> = Vec::new();
        for key in &options.publishers {
            if !publishers.contains(key) {
                publishers.push(key.clone());
            }
        }
        if publishers.is_empty() {
            return Err(ReaderError::NoPublishers);
        }
        let state = &options.state_dir;
        std::fs::create_dir_all(state).map_err(ReaderError::io(state))?;
        let chains = publishers
            .iter()
            .map(|key| Chain::open(key, Some(roots::state_storage(state, key))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReaderError::Root)?;
        let now = SystemTime::now();
        let trackers = chains
            .iter()
            .map(|chain| Tracker::open(state, &chain.authority(now), options.index_limits.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ReaderError::State)?;
        let mut warnings = Vec::new();
        let mut specs = options.mirrors.clone();
        match known::load(state, &options.index_limits) {
            Ok(known) => specs.extend(known.into_iter().map(|url| MirrorSpec {
                location: MirrorLocation::Http(url),
                proxy: None,
                origin: Origin::Known,
            })),
            Err(e) => warnings.push(Warning::KnownMirrors {
                path: known::path(state),
                reason: format!("not read: {e}"),
            }),
        }
        let strictest = strictest_proxy(&options, &specs)?;
        let mut clients: HashMap<Option<String>, reqwest::Client> = HashMap::new();
        let mut mirrors: Vec<Mirror> = Vec::new();
        let mut proxies: Vec<(reqwest::Url, usize)> = Vec::new();
        let mut unproxied = 0;
        for spec in specs {
            if mirrors.iter().any(|m| m.spec.location == spec.location) {
                continue;
            }
            // A mirror learned from an index follows the strictest proxy the user set up (a
            // reader who sends one mirror through Tor must not reach new ones directly), and
            // with `proxy_only` so does every mirror without a proxy of its own.
            let fallback = (spec.origin == Origin::Known || options.proxy_only)
                .then_some(strictest.as_ref())
                .flatten();
            let proxy = spec.proxy.as_ref().or(options.proxy.as_ref()).or(fallback);
            match (proxy, &spec.location) {
                (Some(p), MirrorLocation::Http(_) | MirrorLocation::Bucket(_)) => {
                    match proxies.iter_mut().find(|(q, _)| q == p) {
                        Some((_, n)) => *n += 1,
                        None => proxies.push((p.clone(), 1)),
                    }
                }
                _ => unproxied += 1,
            }
            let mut client_for = |proxy: Option<&reqwest::Url>| -> Result<_, ReaderError> {
                let key = proxy.map(|p| p.to_string());
                if let Some(c) = clients.get(&key) {
                    return Ok(c.clone());
                }
                let c = transport::client(proxy, options.connect_timeout, options.read_timeout)?;
                clients.insert(key, c.clone());
                Ok(c)
            };
            let source = match &spec.location {
                MirrorLocation::Http(base) => transport::Source::Http {
                    client: client_for(proxy)?,
                    base: base.clone(),
                    patience: options.connect_timeout + options.read_timeout,
                },
                MirrorLocation::Bucket(url) => {
                    let bucket = crate::bucket::Environment::from_process()
                        .and_then(|environment| {
                            crate::bucket::Bucket::new(
                                url,
                                &options.s3,
                                &environment,
                                crate::bucket::Access::Read,
                                crate::limits::BucketLimits::default(),
                            )
                        })
                        .map_err(|e| ReaderError::BadMirror {
                            text: url.to_string(),
                            reason: e.to_string(),
                        })?;
                    transport::Source::Bucket {
                        client: client_for(proxy)?,
                        bucket,
                        patience: options.connect_timeout + options.read_timeout,
                    }
                }
                MirrorLocation::Dir(root) => transport::Source::Dir {
                    root: root.clone(),
                    patience: options.connect_timeout + options.read_timeout,
                },
            };
            mirrors.push(Mirror::new(spec, source));
        }
        if mirrors.is_empty() {
            return Err(ReaderError::NoMirrors);
        }
        Ok(Self {
            strictest,
            ranked: vec![Vec::new(); publishers.len()],
            options: ReaderOptions {
                publishers,
                ..options
            },
            mirrors,
            trackers,
            chains,
            warnings,
            proxies,
            unproxied,
        })
    }

    /// Asks each proxy in use whether it answers (a connection, and for SOCKS5 its greeting),
    /// so that a dead proxy is reported once, as itself, instead of as every mirror refusing.
    /// Fails with [`ReaderError::ProxyDown`] when every mirror is behind a dead proxy; a dead
    /// proxy that only some mirrors use becomes a warning.
    pub async fn check_proxies(&mut self) -> Result<(), ReaderError> {
        let timeout = self.options.connect_timeout;
        let mut probes = tokio::task::JoinSet::new();
        for (i, (proxy, _)) in self.proxies.iter().enumerate() {
            let proxy = proxy.clone();
            probes.spawn(async move { (i, transport::probe_proxy(&proxy, timeout).await) });
        }
        let mut dead = Vec::new();
        while let Some(joined) = probes.join_next().await {
            let Ok((i, Err(reason))) = joined else {
                continue;
            };
            let (proxy, behind) = &self.proxies[i];
            dead.push((crate::config::display_url(proxy), reason, *behind));
        }
        let alive: usize = self.unproxied + self.proxies.iter().map(|(_, n)| n).sum::<usize>()
            - dead.iter().map(|(_, _, n)| n).sum::<usize>();
        if alive == 0 {
            if let Some((proxy, problem, _)) = dead.into_iter().next() {
                return Err(ReaderError::ProxyDown { proxy, problem });
            }
            return Ok(());
        }
        for (proxy, problem, _) in dead {
            self.warnings.push(Warning::ProxyDown { proxy, problem });
        }
        Ok(())
    }

    /// The proxy for a connection the user did not configure one for (a learned mirror, a
    /// mirror note's host): the global proxy, else the strictest per-mirror one when any
    /// mirror uses a proxy. `None`: the user set up no proxy at all, so direct is what they
    /// asked for (never with `proxy_only`, which refuses to open without a proxy).
    pub fn proxy_for(&self) -> Option<&reqwest::Url> {
        self.strictest.as_ref()
    }

    /// Races every mirror for every publisher's index and settles on one verified index per
    /// publisher (stored as the new history). Mirrors learned from the accepted indexes are
    /// remembered for next time.
    pub async fn update(&mut self) -> Vec<PublisherUpdate> {
        let sources: Vec<transport::Source> =
            self.mirrors.iter().map(|m| m.source.clone()).collect();
        // Publishers known to have roots: follow them first (they say who signs the heads).
        // A one-key publisher is asked for roots only if no mirror gave an index it signed
        // (it may have adopted a root since), so it costs nothing while nothing changed.
        let mut root_failures: Vec<Option<RootError>> = Vec::new();
        for j in 0..self.chains.len() {
            let failure = if self.chains[j].version() > 0 {
                self.follow_roots(j, &sources).await
            } else {
                None
            };
            root_failures.push(failure);
        }
        let authorities: Vec<Authority> = self
            .chains
            .iter()
            .map(|c| c.authority(SystemTime::now()))
            .collect();
        let races = race::race(
            &sources,
            &authorities,
            &self.options.index_limits,
            self.options.race_window,
            SILENT_MIRROR_GRACE,
        )
        .await;
        let now = SystemTime::now();
        let mut updates = Vec::new();
        let mut learned: Vec<MirrorUrl> = Vec::new();
        for (j, answers) in races.into_iter().enumerate() {
            let publisher = self.trackers[j].publisher().clone();
            if let Some(e) = root_failures[j].take() {
                updates.push(PublisherUpdate {
                    publisher,
                    result: Err(ReaderError::Root(e)),
                });
                continue;
            }
            // A publisher without roots may have adopted one: what its mirrors are found to
            // be in this race is kept aside, to be undone if its roots change the verdict.
            let before: Vec<mirrors::IndexPhase> = match self.chains[j].version() {
                0 => self.mirrors.iter().map(|m| m.index_phase()).collect(),
                _ => Vec::new(),
            };
            let mut result = race::settle(
                &mut self.trackers[j],
                answers,
                &mut self.mirrors,
                self.options.hedge_delay,
                now,
            )
            .await;
            // Only when a mirror served an index the key alone does not verify: the
            // publisher may have adopted a root (unreachable mirrors are not asked again).
            let unverified = matches!(result, Err(ReaderError::NoAuthenticIndex { .. }));
            if unverified && self.chains[j].version() == 0 {
                if let Some(e) = self.follow_roots(j, &sources).await {
                    result = Err(ReaderError::Root(e));
                } else if self.chains[j].version() > 0 {
                    for (m, phase) in self.mirrors.iter_mut().zip(before) {
                        m.restore_index_phase(phase);
                    }
                    let authority = self.chains[j].authority(SystemTime::now());
                    let again = race::race(
                        &sources,
                        std::slice::from_ref(&authority),
                        &self.options.index_limits,
                        self.options.race_window,
                        SILENT_MIRROR_GRACE,
                    )
                    .await;
                    if let Some(answers) = again.into_iter().next() {
                        result = race::settle(
                            &mut self.trackers[j],
                            answers,
                            &mut self.mirrors,
                            self.options.hedge_delay,
                            now,
                        )
                        .await;
                    }
                }
            }
            let tracker = &mut self.trackers[j];
            let result = result.map(|settled| {
                let index = tracker
                    .held()
                    .expect("a settled race leaves an accepted index")
                    .clone();
                for url in index.head().mirrors() {
                    if !learned.contains(url) {
                        learned.push(url.clone());
                    }
                }
                if let Freshness::Expired { since } = index.freshness(now) {
                    self.warnings.push(Warning::Expired {
                        publisher: publisher.id(),
                        sequence: index.head().sequence(),
                        since,
                    });
                }
                if let Outcome::KeptFresher { offered, .. } = settled.outcome {
                    self.warnings.push(Warning::KeptFresher {
                        publisher: publisher.id(),
                        offered,
                        held: index.head().sequence(),
                    });
                }
                self.ranked[j] = settled.ranked;
                PublisherIndex {
                    publisher: publisher.clone(),
                    index,
                    outcome: settled.outcome,
                    source: settled
                        .source
                        .map(|m| self.mirrors[m].label().to_owned())
                        .unwrap_or_else(|| "the stored index".to_owned()),
                }
            });
            updates.push(PublisherUpdate { publisher, result });
        }
        if !learned.is_empty() {
            if let Err(e) = known::remember(
                &self.options.state_dir,
                &learned,
                &self.options.index_limits,
            ) {
                self.warnings.push(Warning::KnownMirrors {
                    path: known::path(&self.options.state_dir),
                    reason: format!("the mirrors learned from the index were not saved: {e}"),
                });
            }
        }
        updates
    }

    /// Walks publisher `j`'s roots over `sources`; when the chain moved, reopens its index
    /// state under the new signing keys. Returns root equivocation, if found.
    async fn follow_roots(&mut self, j: usize, sources: &[transport::Source]) -> Option<RootError> {
        let before = self.chains[j].version();
        let failure = walk_roots(&mut self.chains[j], sources).await;
        if self.chains[j].version() != before {
            let authority = self.chains[j].authority(SystemTime::now());
            match Tracker::open(
                &self.options.state_dir,
                &authority,
                self.options.index_limits.clone(),
            ) {
                Ok(tracker) => self.trackers[j] = tracker,
                Err(e) => tracing::error!("reopening the index state: {e}"),
            }
        }
        failure
    }

    /// Finds `request` in the updated indexes, downloads its bundle by hash (hedged across the
    /// mirrors that answered, fastest first), verifies it and saves it as
    /// `<out_dir>/<name>-v<version>.zip`. A verified copy already there is kept as is.
    pub async fn fetch(
        &mut self,
        updates: &[PublisherUpdate],
        request: &ArticleRequest,
        out_dir: &Path,
        progress: Option<ProgressFn>,
    ) -> Result<SavedBundle, ReaderError> {
        let (j, article) = find(updates, &self.options.publishers, request)?;
        let publisher = self.options.publishers[j].clone();
        std::fs::create_dir_all(out_dir).map_err(ReaderError::io(out_dir))?;
        let dest = out_dir.join(format!("{}-v{}.zip", article.name(), article.version()));
        let label = format!("{} v{}", article.name(), article.version());
        // The bundle is listed by the authentic index: its signature must be the publisher's,
        // by any key its roots delegated (revoking a key does not erase the archive).
        let authority = self.chains[j].every_signer();
        if let Some(bundle) = self.already_saved(&dest, &article, &authority).await? {
            for m in self.mirrors.iter_mut().filter(|m| m.index_usable()) {
                m.note_bundle(Fate::NotNeeded, Some("a verified copy was already saved"));
            }
            return Ok(SavedBundle {
                path: dest,
                publisher,
                article,
                bundle,
                source: None,
                resumed_from: 0,
            });
        }
        let partial_dir = self.options.state_dir.join("partial");
        std::fs::create_dir_all(&partial_dir).map_err(ReaderError::io(&partial_dir))?;
        let job = Arc::new(download::Job::new(
            authority,
            article.clone(),
            partial_dir,
            out_dir.to_owned(),
            self.options.bundle_limits.clone(),
        ));
        // A bundle with a chunk list comes in checked chunks from every mirror at once; one
        // without (small, or published before chunk lists), or whose list no mirror serves,
        // comes whole.
        let segmented = match article.chunks() {
            Some(chunks) => {
                segmented::download(
                    job.clone(),
                    chunks,
                    &self.ranked[j],
                    &mut self.mirrors,
                    self.options.hedge_delay,
                    progress.clone(),
                )
                .await
            }
            None => Ok(None),
        };
        let result = match segmented {
            Ok(Some(done)) => {
                for (m, bytes) in &done.bytes {
                    self.mirrors[*m].add_bytes(*bytes);
                }
                Ok(done.downloaded)
            }
            // No chunk list, or no mirror could give chunks (none answers byte ranges, or all
            // failed) while none lied: the whole file, as for a bundle without a list.
            Ok(None) | Err(ReaderError::BundleUnreachable { .. }) => {
                let done = download::download(
                    job,
                    &self.ranked[j],
                    &mut self.mirrors,
                    self.options.hedge_delay,
                    progress,
                )
                .await;
                if let Ok(done) = &done {
                    // The winner's bytes (other requests' are not counted on this path).
                    self.mirrors[done.mirror].add_bytes(segmented::MirrorBytes {
                        delivered: article.bundle().size - done.resumed_from,
                        wasted: 0,
                    });
                }
                done
            }
            Err(e) => Err(e),
        };
        for m in self.mirrors.iter_mut().filter(|m| m.index_usable()) {
            m.note_bundle(Fate::NotNeeded, None);
        }
        let done = result?;
        done.fetched
            .object
            .persist(&dest)
            .map_err(|source| ReaderError::Bundle {
                article: label,
                source: Box::new(BundleFetchError::Fetch {
                    sha256: article.bundle().sha256,
                    source,
                }),
            })?;
        Ok(SavedBundle {
            path: dest,
            publisher,
            article,
            bundle: done.fetched.bundle,
            source: Some(self.mirrors[done.mirror].label().to_owned()),
            resumed_from: done.resumed_from,
        })
    }

    /// The bundle at `dest`, if it is there and is exactly the listed one, verified.
    async fn already_saved(
        &self,
        dest: &Path,
        article: &ArticleVersion,
        publisher: &Authority,
    ) -> Result<Option<VerifiedBundle>, ReaderError> {
        let file = match crate::index::open_regular(dest) {
            Ok(f) => f,
            // Not there, or not a file (a FIFO would hang the check): the download replaces it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(ReaderError::io(dest)(e)),
        };
        let (dir, article, publisher, limits) = (
            dest.parent().unwrap_or(Path::new(".")).to_owned(),
            article.clone(),
            publisher.clone(),
            self.options.bundle_limits.clone(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            receive_bundle(file, &dir, &article, &publisher, &limits)
        })
        .await
        .map_err(|e| ReaderError::io(dest)(std::io::Error::other(e)))?;
        // Anything else there (a different or damaged file) is replaced by the download.
        Ok(checked.ok().map(|fetched| fetched.bundle))
    }

    /// What happened to every mirror, and the warnings, so far.
    pub fn report(&self) -> Report {
        Report {
            mirrors: self.mirrors.iter().map(Mirror::report).collect(),
            warnings: self.warnings.clone(),
        }
    }
}

/// The strictest proxy the user configured: the global one, else the per-mirror proxy that
/// leaks least (`socks5h://` resolves names through the proxy; `http(s)://` proxies get host
/// names too; `socks5://` resolves them locally, which shows the local network every name).
/// With `proxy_only`, a run without any proxy, or with one that resolves names locally, is
/// refused.
fn strictest_proxy(
    options: &ReaderOptions,
    specs: &[MirrorSpec],
) -> Result<Option<reqwest::Url>, ReaderError> {
    let rank = |p: &reqwest::Url| match p.scheme() {
        "socks5h" => 0,
        "socks5" => 2,
        _ => 1,
    };
    let mut configured = options
        .proxy
        .iter()
        .chain(specs.iter().filter_map(|s| s.proxy.as_ref()));
    if options.proxy_only {
        if let Some(leaky) = configured.find(|p| p.scheme() == "socks5") {
            return Err(ReaderError::ProxyOnly(format!(
                "proxy {leaky} resolves host names locally, outside the proxy; use socks5h://"
            )));
        }
    }
    let strictest = match &options.proxy {
        Some(global) => Some(global.clone()),
        None => specs
            .iter()
            .filter_map(|s| s.proxy.as_ref())
            .min_by_key(|p| rank(p))
            .cloned(),
    };
    let needs_network = specs.iter().any(|s| {
        matches!(
            s.location,
            MirrorLocation::Http(_) | MirrorLocation::Bucket(_)
        )
    });
    if options.proxy_only && strictest.is_none() && needs_network {
        return Err(ReaderError::ProxyOnly(
            "no proxy to send requests through: give --proxy (e.g. socks5h://127.0.0.1:9050 \
             for Tor) or [reader] proxy"
                .into(),
        ));
    }
    Ok(strictest)
}

/// Walks `chain` forward with the roots the mirrors serve, each mirror in turn (a mirror
/// serving a root that does not verify is passed over). Root equivocation is returned: the
/// publisher's root keys signed two histories, and nothing of it should be shown.
async fn walk_roots(chain: &mut Chain, sources: &[transport::Source]) -> Option<RootError> {
    let id = chain.id().clone();
    let layout = crate::index::layout::PublisherLayout::new(&id);
    for source in sources {
        let read = async |version| {
            let path = layout.root(version);
            source.read(&path, crate::limits::MAX_ROOT_BYTES).await.ok()
        };
        match chain.walk(read).await {
            Ok(_) => {}
            Err(e @ RootError::Equivocation { .. }) => return Some(e),
            Err(e) => tracing::warn!("publisher {}: a mirror's root was refused: {e}", id.id()),
        }
    }
    None
}

/// The article `request` names among the updated indexes: (publisher position, entry).
fn find(
    updates: &[PublisherUpdate],
    publishers: &[PublicKey],
    request: &ArticleRequest,
) -> Result<(usize, ArticleVersion), ReaderError> {
    let mut found: Vec<(usize, ArticleVersion)> = Vec::new();
    let mut unchecked = Vec::new();
    let mut unchecked_class: Option<ErrorClass> = None;
    for update in updates {
        let Some(j) = publishers.iter().position(|k| k == &update.publisher) else {
            continue;
        };
        let index = match &update.result {
            Ok(p) => &p.index,
            Err(e) => {
                unchecked.push(update.publisher.id());
                unchecked_class = Some(match (unchecked_class, e.class()) {
                    (Some(ErrorClass::Verification), _) | (_, ErrorClass::Verification) => {
                        ErrorClass::Verification
                    }
                    (_, class) => class,
                });
                continue;
            }
        };
        let hit = match request.version {
            None => index
                .current()
                .into_iter()
                .find(|(_, a)| a.name() == request.name)
                .map(|(_, a)| a.clone()),
            Some(version) => index.entries().iter().rev().find_map(|e| match e {
                Entry::Add(a) if a.name() == request.name && a.version() == version => {
                    Some(a.clone())
                }
                _ => None,
            }),
        };
        if let Some(article) = hit {
            found.push((j, article));
        }
    }
    match found.len() {
        0 => Err(ReaderError::NotListed {
            request: request.clone(),
            unchecked,
            unchecked_class,
        }),
        1 => Ok(found.remove(0)),
        _ => Err(ReaderError::Ambiguous {
            name: request.name.clone(),
            publishers: found.iter().map(|(j, _)| publishers[*j].id()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_requests_parse() {
        assert_eq!(
            "alpha".parse::<ArticleRequest>().unwrap(),
            ArticleRequest {
                name: "alpha".into(),
                version: None
            }
        );
        assert_eq!(
            "alpha-2@3".parse::<ArticleRequest>().unwrap().version,
            Some(3)
        );
        for bad in ["", "Alpha", "a@0", "a@x", "a@", "../a", "a.zip", "a@1@2"] {
            assert!(bad.parse::<ArticleRequest>().is_err(), "{bad}");
        }
    }
}
