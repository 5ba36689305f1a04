//! Mirrors as the reader sees them: where each one is, and what happened to it in this run.
//!
//! Owns parsing a mirror location (an http(s) base URL, a `file://` URL or a folder), the fate
//! of each mirror (one per phase, merged by severity: a lie is never hidden by a later
//! success) and the [`Report`]. It never contacts a mirror.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::segmented::MirrorBytes;
use super::transport::Source;
use super::{ReaderError, Warning};
use crate::index::MirrorUrl;
use crate::limits::IndexLimits;

/// Where a mirror is: the base under which `qasid/v1/...` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorLocation {
    /// An `http://` or `https://` base URL (normalised to end in `/`).
    Http(MirrorUrl),
    /// A local folder: a repo or mirror copied to a USB stick, a mounted share.
    Dir(PathBuf),
    /// `s3://bucket/prefix`: read through the S3 API with the `AWS_*` credentials (private
    /// buckets, and Garage, which has no anonymous S3 reads). A public bucket is a plain
    /// `https://` mirror.
    Bucket(crate::bucket::BucketUrl),
}

impl MirrorLocation {
    /// Parses `--mirror`: an http(s) URL, `s3://bucket/prefix`, a `file://` URL, or else a
    /// folder path.
    pub fn parse(text: &str, limits: &IndexLimits) -> Result<Self, ReaderError> {
        let bad = |reason: String| ReaderError::BadMirror {
            text: text.to_owned(),
            reason,
        };
        if text.starts_with(crate::bucket::SCHEME) {
            return crate::bucket::BucketUrl::parse(text)
                .map(MirrorLocation::Bucket)
                .map_err(|e| bad(e.to_string()));
        }
        if !text.contains("://") {
            if text.is_empty() {
                return Err(bad("empty".into()));
            }
            return Ok(MirrorLocation::Dir(PathBuf::from(text)));
        }
        let url = reqwest::Url::parse(text).map_err(|e| bad(e.to_string()))?;
        Self::from_url(&url, limits).map_err(|e| match e {
            ReaderError::BadMirror { reason, .. } => bad(reason),
            other => other,
        })
    }

    /// A location from a parsed URL (the config's `[reader] mirrors`).
    pub fn from_url(url: &reqwest::Url, limits: &IndexLimits) -> Result<Self, ReaderError> {
        let bad = |reason: String| ReaderError::BadMirror {
            text: url.to_string(),
            reason,
        };
        match url.scheme() {
            "http" | "https" => MirrorUrl::parse(url.as_str(), limits)
                .map(MirrorLocation::Http)
                .map_err(|e| bad(e.to_string())),
            "file" => url
                .to_file_path()
                .map(MirrorLocation::Dir)
                .map_err(|()| bad("not a local file path".into())),
            "s3" => crate::bucket::BucketUrl::parse(url.as_str())
                .map(MirrorLocation::Bucket)
                .map_err(|e| bad(e.to_string())),
            other => Err(bad(format!(
                "scheme {other:?} is not supported (use http, https, s3, file or a folder)"
            ))),
        }
    }

    /// How the mirror is named in reports.
    pub fn label(&self) -> String {
        match self {
            MirrorLocation::Http(url) => url.to_string(),
            MirrorLocation::Dir(path) => path.display().to_string(),
            MirrorLocation::Bucket(url) => url.to_string(),
        }
    }
}

/// Where the reader heard of a mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// `--mirror`.
    Flag,
    /// The config file's `[reader] mirrors`.
    Config,
    /// Learned from a publisher's signed index in an earlier run.
    Known,
    /// From a signed mirror note (`--note`, `[reader] notes`, `[[note_source]]`).
    Note,
}

/// A mirror to use, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSpec {
    pub location: MirrorLocation,
    /// This mirror's own proxy (overrides the global one).
    pub proxy: Option<reqwest::Url>,
    pub origin: Origin,
}

/// What happened to a mirror in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Served what was used (or the same authentic index as the one used).
    Ok,
    /// Served an authentic but older index: refused as a rollback, or older than another
    /// mirror's.
    Stale,
    /// Served something that failed verification: a forged or tampered index, bytes not
    /// matching a signed hash, more bytes than signed. Not used again in the run.
    Lying,
    /// Did not answer in time (a tarpit, a throttled or blocked path).
    TimedOut,
    /// The connection failed (refused, unreachable, no such host, proxy refused).
    Refused,
    /// Answered with an error (HTTP status, missing file).
    Failed,
    /// Another mirror was faster: not asked for the bundle, or cancelled.
    NotNeeded,
}

impl Fate {
    /// Which of two notes about one mirror the report keeps.
    fn severity(self) -> u8 {
        match self {
            Fate::Lying => 6,
            Fate::Stale => 5,
            Fate::Ok => 4,
            Fate::Failed => 3,
            Fate::TimedOut => 2,
            Fate::Refused => 1,
            Fate::NotNeeded => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Ok => "ok",
            Fate::Stale => "stale",
            Fate::Lying => "lying",
            Fate::TimedOut => "timed out",
            Fate::Refused => "refused",
            Fate::Failed => "failed",
            Fate::NotNeeded => "not needed",
        }
    }
}

/// One mirror's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorReport {
    pub mirror: String,
    pub origin: Origin,
    pub fate: Fate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How fast its first valid index answer came, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_ms: Option<u64>,
    /// Bundle bytes this mirror sent that were checked and used.
    pub bytes_delivered: u64,
    /// Bundle bytes this mirror sent that were not used: a bad chunk, a chunk cut part-way,
    /// a duplicate of a chunk another mirror delivered first.
    pub bytes_wasted: u64,
}

/// What a run did to each mirror, in the order they were given, and what to warn about.
#[derive(Debug, Clone)]
pub struct Report {
    pub mirrors: Vec<MirrorReport>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone)]
struct Note {
    fate: Fate,
    detail: Option<String>,
}

/// A mirror's index-phase notes (see [`Mirror::index_phase`]).
#[derive(Debug, Clone)]
pub(super) struct IndexPhase(Option<Note>, Option<Note>, Option<Duration>);

/// A mirror in a run: how to reach it and what happened to it.
#[derive(Debug)]
pub(super) struct Mirror {
    pub(super) spec: MirrorSpec,
    pub(super) source: Source,
    label: String,
    index: Option<Note>,
    /// The worst failure while fetching index pieces (a stall, an error; lies go to `index`).
    pieces: Option<Note>,
    bundle: Option<Note>,
    answered: Option<Duration>,
    bytes: MirrorBytes,
}

impl Mirror {
    pub(super) fn new(spec: MirrorSpec, source: Source) -> Self {
        Self {
            label: spec.location.label(),
            spec,
            source,
            index: None,
            pieces: None,
            bundle: None,
            answered: None,
            bytes: MirrorBytes::default(),
        }
    }

    pub(super) fn label(&self) -> &str {
        &self.label
    }

    /// Records a note from the index phase (kept if it is the most severe so far).
    pub(super) fn note_index(&mut self, fate: Fate, detail: Option<&str>) {
        merge(&mut self.index, fate, detail);
    }

    /// Records a failure while fetching an index piece.
    pub(super) fn note_piece(&mut self, fate: Fate, detail: &str) {
        merge(&mut self.pieces, fate, Some(detail));
    }

    /// Stalled on or failed to give an index piece in this run.
    pub(super) fn failed_a_piece(&self) -> bool {
        self.pieces.is_some()
    }

    /// Records a note from the bundle phase.
    pub(super) fn note_bundle(&mut self, fate: Fate, detail: Option<&str>) {
        merge(&mut self.bundle, fate, detail);
    }

    /// Counts bundle bytes this mirror delivered and wasted.
    pub(super) fn add_bytes(&mut self, bytes: MirrorBytes) {
        self.bytes.delivered += bytes.delivered;
        self.bytes.wasted += bytes.wasted;
    }

    /// A valid index answer arrived after `latency`.
    pub(super) fn answered(&mut self, latency: Duration) {
        self.answered = Some(self.answered.map_or(latency, |a| a.min(latency)));
    }

    /// What the index phase noted so far, to put back with [`Mirror::restore_index_phase`].
    pub(super) fn index_phase(&self) -> IndexPhase {
        IndexPhase(self.index.clone(), self.pieces.clone(), self.answered)
    }

    /// Undoes the notes of an index race whose verdicts no longer hold: a head that did not
    /// verify with a bare key was a publisher's new signing key, learnt from its roots since.
    pub(super) fn restore_index_phase(&mut self, phase: IndexPhase) {
        (self.index, self.pieces, self.answered) = (phase.0, phase.1, phase.2);
    }

    /// Lied in this run: never asked for anything again.
    pub(super) fn is_lying(&self) -> bool {
        [&self.index, &self.bundle]
            .iter()
            .any(|n| n.as_ref().is_some_and(|n| n.fate == Fate::Lying))
    }

    /// Served an authentic index (current or older) in this run.
    pub(super) fn index_usable(&self) -> bool {
        self.index
            .as_ref()
            .is_some_and(|n| matches!(n.fate, Fate::Ok | Fate::Stale))
    }

    pub(super) fn report(&self) -> MirrorReport {
        let note = self.overall();
        MirrorReport {
            mirror: self.label.clone(),
            origin: self.spec.origin,
            fate: note.fate,
            detail: note.detail,
            answered_ms: self.answered.map(|d| d.as_millis() as u64),
            bytes_delivered: self.bytes.delivered,
            bytes_wasted: self.bytes.wasted,
        }
    }

    /// A lie anywhere wins; then a stale index; then a failed index; then a piece it stalled
    /// on or failed to give (unless it served the bundle); then the bundle phase.
    fn overall(&self) -> Note {
        for note in [&self.bundle, &self.index].into_iter().flatten() {
            if note.fate == Fate::Lying {
                return note.clone();
            }
        }
        let served_bundle = self.bundle.as_ref().is_some_and(|b| b.fate == Fate::Ok);
        match (&self.index, &self.pieces, &self.bundle) {
            (Some(i), _, _) if i.fate == Fate::Stale => return i.clone(),
            (Some(i), Some(p), _) if i.fate == Fate::Ok && !served_bundle => return p.clone(),
            _ => {}
        }
        match (&self.index, &self.bundle) {
            (Some(i), _) if i.fate == Fate::Stale => i.clone(),
            (Some(i), Some(b)) if i.fate == Fate::Ok => b.clone(),
            (Some(i), _) => i.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => Note {
                fate: Fate::NotNeeded,
                detail: None,
            },
        }
    }
}

fn merge(slot: &mut Option<Note>, fate: Fate, detail: Option<&str>) {
    if slot
        .as_ref()
        .is_none_or(|n| fate.severity() > n.fate.severity())
    {
        *slot = Some(Note {
            fate,
            detail: detail.map(str::to_owned),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror() -> Mirror {
        Mirror::new(
            MirrorSpec {
                location: MirrorLocation::Dir(PathBuf::from("/media/usb")),
                proxy: None,
                origin: Origin::Flag,
            },
            Source::Dir {
                root: PathBuf::from("/media/usb"),
                patience: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn locations_parse() {
        let l = IndexLimits::default();
        assert!(matches!(
            MirrorLocation::parse("https://m.example/x", &l).unwrap(),
            MirrorLocation::Http(u) if u.as_str() == "https://m.example/x/"
        ));
        assert_eq!(
            MirrorLocation::parse("file:///media/usb/repo", &l).unwrap(),
            MirrorLocation::Dir(PathBuf::from("/media/usb/repo"))
        );
        assert_eq!(
            MirrorLocation::parse("usb/repo", &l).unwrap(),
            MirrorLocation::Dir(PathBuf::from("usb/repo"))
        );
        assert!(MirrorLocation::parse("ftp://m.example/", &l).is_err());
        assert!(MirrorLocation::parse("https://u:p@m.example/", &l).is_err());
        assert!(MirrorLocation::parse("", &l).is_err());
    }

    #[test]
    fn a_lie_is_never_hidden_by_a_later_success() {
        let mut m = mirror();
        m.note_index(Fate::Ok, None);
        m.note_bundle(Fate::Lying, Some("hash mismatch"));
        m.note_bundle(Fate::Ok, None);
        assert!(m.is_lying());
        assert_eq!(m.report().fate, Fate::Lying);
    }

    #[test]
    fn index_failures_and_bundle_fates_combine() {
        let mut m = mirror();
        m.note_index(Fate::TimedOut, Some("no answer"));
        m.note_bundle(Fate::NotNeeded, None);
        assert_eq!(m.report().fate, Fate::TimedOut);

        let mut m = mirror();
        m.note_index(Fate::Ok, None);
        assert_eq!(m.report().fate, Fate::Ok);
        m.note_bundle(Fate::NotNeeded, None);
        assert_eq!(m.report().fate, Fate::NotNeeded);

        let mut m = mirror();
        m.note_index(Fate::Stale, Some("rollback"));
        m.note_bundle(Fate::Ok, None);
        assert_eq!(m.report().fate, Fate::Stale);
    }
}
