//! Mirror notes as a source of mirrors for a reader run: `--note`, `[reader] notes` and
//! `[[note_source]]`.
//!
//! Owns getting each source's text (a URI as given, a file, an HTTP(S) body through the
//! reader's client and proxy, DNS TXT records through the configured resolver), all bounded;
//! verifying every candidate with [`crate::note`]; keeping the newest per publisher (the
//! rollback rule, `note::seen`, in `<state>/notes/`), and turning accepted notes into mirrors
//! that join the race and are remembered like mirrors learned from a signed index. A note that
//! fails is reported, never used; trust comes only from the publisher keys.

use std::io::Read as _;
use std::path::Path;
use std::time::SystemTime;

use super::transport;
use super::{known, MirrorLocation, MirrorSpec, Origin, ReaderError, ReaderOptions};
use crate::index::MirrorUrl;
use crate::keys::PublicKey;
use crate::keys::Trusted as _;
use crate::limits::{MAX_NOTES_PER_SOURCE, MAX_NOTE_TEXT_BYTES};
use crate::note::dns::{self, DnsServer};
use crate::note::seen::{self, Stored};
use crate::note::source::{candidates, NoteSpec};
use crate::note::{NoteError, NoteMirror, SignedNote, VerifiedNote};
use crate::roots::{self, Authority, Chain};
use crate::ErrorClass;

/// A note accepted from a source.
#[derive(Debug, Clone)]
pub struct AcceptedNote {
    pub publisher: PublicKey,
    pub sequence: u64,
    pub mirrors: Vec<NoteMirror>,
    /// Whether it replaced the held note (or an equal or same one was held).
    pub stored: Stored,
}

/// Why a source gave no usable note: the message, and how bad (verification when something
/// inauthentic, expired or older was offered).
#[derive(Debug, Clone)]
pub struct NoteFailure {
    pub class: ErrorClass,
    pub message: String,
}

/// What one note source gave.
#[derive(Debug, Clone)]
pub struct NoteOutcome {
    /// The source as the user named it (a URI is shortened).
    pub source: String,
    pub result: Result<Vec<AcceptedNote>, NoteFailure>,
}

/// Every source's outcome, and the mirrors of the accepted notes, in source order.
#[derive(Debug, Clone, Default)]
pub struct GatheredNotes {
    pub outcomes: Vec<NoteOutcome>,
    pub mirrors: Vec<MirrorSpec>,
}

impl GatheredNotes {
    /// The most serious failure, if no source gave a note (verification before runtime).
    pub fn worst_failure(&self) -> Option<&NoteFailure> {
        let rank = |c: ErrorClass| match c {
            ErrorClass::Verification => 2,
            ErrorClass::Runtime => 1,
            ErrorClass::Usage => 0,
        };
        self.outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().err())
            .max_by_key(|f| rank(f.class))
    }
}

/// The candidate note URIs in a file (one per line), reading at most
/// [`MAX_NOTE_TEXT_BYTES`].
pub fn read_note_file(path: &Path) -> std::io::Result<Vec<String>> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_NOTE_TEXT_BYTES).read_to_string(&mut text))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(candidates(&text, MAX_NOTES_PER_SOURCE))
}

/// Reads every note source of `options`, verifies what they hold, stores the newest note per
/// publisher and returns the accepted notes' mirrors (origin [`Origin::Note`]), which are also
/// remembered in the known-mirrors file.
pub async fn gather_notes(options: &ReaderOptions) -> Result<GatheredNotes, ReaderError> {
    let mut gathered = GatheredNotes::default();
    if options.notes.is_empty() {
        return Ok(gathered);
    }
    let client = transport::client(
        options.proxy.as_ref(),
        options.connect_timeout,
        options.read_timeout,
    )?;
    let state = &options.state_dir;
    std::fs::create_dir_all(state).map_err(ReaderError::io(state))?;
    // Who may sign notes: what each publisher's held roots delegate for notes now (the
    // publisher key itself without roots). Roots are walked later, with the index race.
    let now = SystemTime::now();
    let authorities = options
        .publishers
        .iter()
        .map(|key| {
            Chain::open(key, Some(roots::state_storage(state, key))).map(|c| c.authority(now))
        })
        .collect::<Result<Vec<Authority>, _>>()
        .map_err(ReaderError::Root)?;
    let mut learned: Vec<MirrorUrl> = Vec::new();
    for spec in &options.notes {
        let result = match texts(spec, options, &client).await {
            Ok(texts) => accept(&texts, options, &authorities, SystemTime::now()),
            Err(failure) => Err(failure),
        };
        if let Ok(accepted) = &result {
            for m in accepted.iter().flat_map(|a| &a.mirrors) {
                if !learned.contains(&m.url) {
                    learned.push(m.url.clone());
                }
                let location = MirrorLocation::Http(m.url.clone());
                if !gathered.mirrors.iter().any(|s| s.location == location) {
                    gathered.mirrors.push(MirrorSpec {
                        location,
                        proxy: None,
                        origin: Origin::Note,
                    });
                }
            }
        }
        gathered.outcomes.push(NoteOutcome {
            source: spec.to_string(),
            result,
        });
    }
    if !learned.is_empty() {
        // Losing the memory of a note's mirrors costs a later run, not this one.
        if let Err(e) = known::remember(state, &learned, &options.index_limits) {
            tracing::warn!("known mirrors file: the mirrors of a note were not saved: {e}");
        }
    }
    Ok(gathered)
}

fn runtime(message: String) -> NoteFailure {
    NoteFailure {
        class: ErrorClass::Runtime,
        message,
    }
}

/// The candidate note URIs a source holds.
async fn texts(
    spec: &NoteSpec,
    options: &ReaderOptions,
    client: &reqwest::Client,
) -> Result<Vec<String>, NoteFailure> {
    match spec {
        NoteSpec::Uri(uri) => Ok(vec![uri.clone()]),
        NoteSpec::File(path) => read_note_file(path).map_err(|e| runtime(e.to_string())),
        NoteSpec::Url(url) => {
            let patience = options.connect_timeout + options.read_timeout;
            let body =
                transport::get_capped(client, url.as_str(), MAX_NOTE_TEXT_BYTES, patience, None)
                    .await
                    .map_err(|e| runtime(format!("{url}: {}", e.fate().1)))?;
            Ok(candidates(
                &String::from_utf8_lossy(&body),
                MAX_NOTES_PER_SOURCE,
            ))
        }
        NoteSpec::Dns(name) => {
            let server = resolver(options)?;
            let records = dns::lookup_txt(name, &server, client)
                .await
                .map_err(|e| runtime(e.to_string()))?;
            Ok(records
                .into_iter()
                .filter(|r| r.starts_with("qasid:"))
                .take(MAX_NOTES_PER_SOURCE)
                .collect())
        }
    }
}

/// The resolver for `dns:` sources. Plain DNS (UDP or TCP) cannot be sent through an HTTP or
/// SOCKS proxy, and sending it around the proxy would tell the network which names the reader
/// looks up: with a proxy, only DNS over HTTPS is used.
fn resolver(options: &ReaderOptions) -> Result<DnsServer, NoteFailure> {
    let usage = |message: String| NoteFailure {
        class: ErrorClass::Usage,
        message,
    };
    let server = match &options.dns_server {
        Some(s) => s.clone(),
        None if options.proxy.is_some() => {
            return Err(usage(
                "a proxy is set, and plain DNS cannot go through it: give a DNS-over-HTTPS \
                 resolver (--dns-server https://…/dns-query or [reader] dns_server)"
                    .into(),
            ))
        }
        None => DnsServer::system().ok_or_else(|| {
            usage("no DNS resolver: give --dns-server IP:PORT or https://…/dns-query".into())
        })?,
    };
    if matches!(server, DnsServer::Plain(_)) && options.proxy.is_some() {
        return Err(usage(format!(
            "a proxy is set, and plain DNS to {server} cannot go through it: use a \
             DNS-over-HTTPS resolver (https://…/dns-query)"
        )));
    }
    Ok(server)
}

/// Verifies the candidates of one source and stores the newest note of each publisher.
fn accept(
    texts: &[String],
    options: &ReaderOptions,
    authorities: &[Authority],
    now: SystemTime,
) -> Result<Vec<AcceptedNote>, NoteFailure> {
    let mut verified: Vec<VerifiedNote> = Vec::new();
    let mut errors: Vec<NoteError> = Vec::new();
    for text in texts {
        match SignedNote::from_uri(text)
            .and_then(|s| s.verify(authorities))
            .and_then(|v| v.check_fresh(now).map(|()| v))
        {
            Ok(v) => verified.push(v),
            Err(e) => errors.push(e),
        }
    }
    verified.sort_by_key(|v| std::cmp::Reverse(v.note().sequence));
    let mut accepted: Vec<AcceptedNote> = Vec::new();
    for v in verified {
        if accepted.iter().any(|a| &a.publisher == v.publisher()) {
            continue;
        }
        let path = seen::reader_path(&options.state_dir, v.publisher());
        let authority = authorities
            .iter()
            .find(|a| a.publisher() == v.publisher())
            .expect("a verified note's publisher is one of the authorities");
        match seen::store(&options.state_dir, &path, authority, &v) {
            Ok(stored) => accepted.push(AcceptedNote {
                publisher: v.publisher().clone(),
                sequence: v.note().sequence,
                mirrors: v.note().mirrors.clone(),
                stored,
            }),
            Err(e) => errors.push(e),
        }
    }
    if !accepted.is_empty() {
        return Ok(accepted);
    }
    if texts.is_empty() {
        return Err(runtime("holds no note".into()));
    }
    let worst = errors
        .iter()
        .find(|e| e.class() == ErrorClass::Verification)
        .or(errors.first())
        .expect("a candidate that was not accepted left an error");
    Err(NoteFailure {
        class: worst.class(),
        message: worst.to_string(),
    })
}
