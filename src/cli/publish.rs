//! `qasid publish`: add bundles to the publisher's repo folder and sign a new index.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use qasid::index::MirrorUrl;
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::note::VerifiedNote;
use qasid::repo::{BundleStatus, MirrorEdit, PublishReport, PublishRequest, Repo, RepoError};

use super::{json, load_secret_key, print_json, Failure};

/// Shortest and longest `--note-expires` (as for `note create --expires`): a note must outlive
/// its trip through a channel, and a long-lived one hands out mirrors long after they may have
/// been blocked or seized.
const MIN_NOTE_EXPIRES: Duration = Duration::from_secs(60);
const MAX_NOTE_EXPIRES: Duration = Duration::from_secs(366 * 86400);

/// Publish bundles into a repo folder and sign a new index.
///
/// The repo folder is a complete static mirror: serve it with any web server. Each bundle is
/// verified against the key (a bundle signed by another key is refused), stored under its
/// sha256, and listed in a new signed index (sequence + 1). Publishing a bundle that is
/// already listed changes nothing. index.json is written last, so a server never sees a
/// half-finished publish. Retracting drops a name from the current listing; the index keeps
/// its history, and mirrors may keep archived copies of the bundles.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid publish launch.zip --repo site --key keys/publisher.key --mirror https://mirror.example/
  qasid publish launch-v2.zip --repo site --key keys/publisher.key      # a correction
  qasid publish --retract old-story --repo site --key keys/publisher.key
  qasid publish --refresh --repo site --key keys/publisher.key --expires 7d   # from cron, daily
  qasid publish --add-mirror https://new.example/ --repo site --key keys/publisher.key
  qasid publish --remove-mirror https://gone.example/ --repo site --key keys/publisher.key

The index expires (--expires, default 7d): readers then warn that what they see may be stale
or frozen by a censor, so re-sign it with --refresh more often than it expires.")]
pub struct PublishArgs {
    /// Bundles to publish (FILE.zip.minisig next to a bundle is copied along).
    #[arg(
        value_name = "FILE.zip",
        required_unless_present_any = ["refresh", "retract", "add_mirrors", "remove_mirrors"]
    )]
    bundles: Vec<PathBuf>,
    /// The repo folder (created if missing).
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// The publisher's secret key file (from `qasid keygen`).
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
    /// A mirror's base URL to list in the signed index (repeat for several). Replaces the
    /// whole list; without it (and without --add-mirror/--remove-mirror) the list is kept.
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Add one mirror to the signed list, keeping the others (repeatable). Without bundles,
    /// signs a new index with the changed list.
    #[arg(long = "add-mirror", value_name = "URL", conflicts_with = "mirrors")]
    add_mirrors: Vec<String>,
    /// Remove one mirror from the signed list, keeping the others (repeatable). Without
    /// bundles, signs a new index with the changed list.
    #[arg(long = "remove-mirror", value_name = "URL", conflicts_with = "mirrors")]
    remove_mirrors: Vec<String>,
    /// How long the new index is valid (e.g. 12h, 7d, 30d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    expires: Duration,
    /// Sign a new index even if nothing changed: new sequence number and expiry, the same
    /// articles. --mirror, --add-mirror, --remove-mirror and --retract still apply.
    #[arg(long, conflicts_with = "bundles")]
    refresh: bool,
    /// Drop these article names from the current listing.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    retract: Vec<String>,
    /// After publishing, sign a mirror note (sequence: the index's issue time; mirrors: its
    /// signed list) and write its qasid:1:… URI to FILE and to the repo's `note` file, which
    /// mirrors serve. The key must be allowed to sign notes (with roots: the note role).
    #[arg(long, value_name = "FILE")]
    note_out: Option<PathBuf>,
    /// How long the note of --note-out is valid: longer than the index, since a note travels
    /// through chats and flyers, yet short enough that old mirror lists fade.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration, requires = "note_out")]
    note_expires: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl PublishArgs {
    pub fn run(self) -> Result<(), Failure> {
        let limits = IndexLimits::default();
        let parse = |urls: &[String]| {
            urls.iter()
                .map(|m| MirrorUrl::parse(m, &limits))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::usage)
        };
        let mirrors = if self.mirrors.is_empty() {
            None
        } else {
            Some(parse(&self.mirrors)?)
        };
        let edit = MirrorEdit {
            add: parse(&self.add_mirrors)?,
            remove: parse(&self.remove_mirrors)?,
        };
        let key = load_secret_key(&self.key)?;
        let repo = Repo::for_key(&self.repo, key.public(), limits, BundleLimits::default())?;
        let now = SystemTime::now();
        if self.note_out.is_some() {
            check_note_request(
                &repo,
                &key,
                mirrors.as_deref(),
                &edit,
                self.note_expires,
                now,
            )?;
        }
        let report = repo.publish_editing_mirrors(
            &key,
            &PublishRequest {
                bundles: self.bundles,
                retract: self.retract,
                refresh: self.refresh,
                mirrors,
                expires_in: self.expires,
                now,
            },
            &edit,
        )?;
        let note = match &self.note_out {
            Some(path) => Some(write_note(
                &repo,
                &key,
                &report,
                path,
                now + self.note_expires,
            )?),
            None => None,
        };
        if self.json {
            let mut doc = json_document(key.public(), &report);
            if let (Some(signed), Some(path)) = (&note, &self.note_out) {
                doc["note"] = note_json(signed, path);
            }
            return print_json(&doc);
        }
        for b in &report.bundles {
            let what = match b.status {
                BundleStatus::Added => "added    ",
                BundleStatus::AlreadyPublished => "unchanged",
            };
            println!(
                "{what} {} v{}  {} ({} bytes)",
                b.name, b.version, b.sha256, b.size
            );
        }
        for name in &report.retracted {
            println!("retracted {name}");
        }
        match &report.signed {
            Some(signed) => {
                let h = signed.head();
                println!(
                    "signed index sequence {} ({} entries in {} pieces, {} piece files written), expires {}",
                    h.sequence(),
                    h.log().entries(),
                    h.log().pieces().len(),
                    report.pieces_written.len(),
                    humantime::format_rfc3339_seconds(h.expires())
                );
                if !edit.is_empty() {
                    let listed: Vec<&str> = h.mirrors().iter().map(|m| m.as_str()).collect();
                    println!("mirrors: {}", listed.join(" "));
                }
            }
            None => println!(
                "nothing to publish: every bundle is already listed (index sequence {} unchanged; \
                 use --refresh to re-sign it)",
                report.previous_sequence.unwrap_or(0)
            ),
        }
        if let (Some(signed), Some(path)) = (&note, &self.note_out) {
            let n = signed.note();
            println!(
                "note sequence {} ({} mirrors, expires {}) written to {} and the repo's note file",
                n.sequence,
                n.mirrors.len(),
                humantime::format_rfc3339_seconds(signed.expires()),
                path.display()
            );
        }
        Ok(())
    }
}

/// What `--note-out` needs, checked before anything is written: a note key, an expiry in
/// range, and mirrors in the list the new index will carry.
fn check_note_request(
    repo: &Repo,
    key: &qasid::keys::SecretKey,
    mirrors: Option<&[MirrorUrl]>,
    edit: &MirrorEdit,
    expires: Duration,
    now: SystemTime,
) -> Result<(), Failure> {
    repo.check_note_key(key.public(), now)?;
    if !(MIN_NOTE_EXPIRES..=MAX_NOTE_EXPIRES).contains(&expires) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--note-expires must be between 1 minute and 366 days"
        )));
    }
    let listed = match mirrors {
        Some(list) => list.to_vec(),
        None => repo
            .current()?
            .map(|i| i.head().mirrors().to_vec())
            .unwrap_or_default(),
    };
    let left = listed
        .iter()
        .chain(&edit.add)
        .any(|m| !edit.remove.contains(m));
    if !left {
        return Err(RepoError::NoMirrorsForNote.into());
    }
    Ok(())
}

/// Signs the note of the index now current (the one just signed, or the held one when nothing
/// changed), writes it into the repo and to `path`, and returns it verified.
fn write_note(
    repo: &Repo,
    key: &qasid::keys::SecretKey,
    report: &PublishReport,
    path: &std::path::Path,
    expires: SystemTime,
) -> Result<VerifiedNote, Failure> {
    let current;
    let head = match &report.signed {
        Some(signed) => signed.head(),
        None => {
            current = repo.current()?.ok_or(RepoError::NothingPublished)?;
            current.head()
        }
    };
    let signed = repo.write_note(key, head, expires)?;
    qasid::note::write_uri_file(path, &signed)
        .map_err(|e| Failure::runtime(anyhow::anyhow!("{}: {e}", path.display())))?;
    signed
        .verify(std::slice::from_ref(key.public()))
        .map_err(Failure::from)
}

fn note_json(v: &VerifiedNote, path: &std::path::Path) -> serde_json::Value {
    let n = v.note();
    serde_json::json!({
        "file": path,
        "uri": v.signed().to_uri(),
        "sequence": n.sequence,
        "expires": humantime::format_rfc3339_seconds(v.expires()).to_string(),
        "mirrors": n.mirrors.iter().map(|m| m.url.as_str()).collect::<Vec<_>>(),
    })
}

/// `index` (the newly signed index) is present only when something was published; `sequence`
/// is the repo's index sequence after the call either way.
fn json_document(publisher: &qasid::keys::PublicKey, report: &PublishReport) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "publisher": json::publisher(publisher),
        "published": report.signed.is_some(),
        "bundles": report.bundles.iter().map(|b| serde_json::json!({
            "path": b.path,
            "name": b.name,
            "version": b.version,
            "sha256": b.sha256,
            "size": b.size,
            "added": b.status == BundleStatus::Added,
        })).collect::<Vec<_>>(),
        "retracted": report.retracted,
    });
    let sequence = match &report.signed {
        Some(signed) => {
            let h = signed.head();
            doc["index"] = serde_json::json!({
                "sha256": signed.id(),
                "sequence": h.sequence(),
                "expires": humantime::format_rfc3339_seconds(h.expires()).to_string(),
                "entries": h.log().entries(),
                "pieces": h.log().pieces().len(),
                "pieces_written": report.pieces_written.len(),
                "mirrors": h.mirrors(),
            });
            Some(h.sequence())
        }
        None => report.previous_sequence,
    };
    if let Some(sequence) = sequence {
        doc["sequence"] = sequence.into();
    }
    doc
}
