//! `qasid note create|show`: signed mirror notes as URIs, QR codes and DNS TXT records.
//!
//! Only turns flags into [`qasid::note`] calls and prints; the format, signing, verifying and
//! the per-channel subset are the library's.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use qasid::note::dns::{txt_strings, zone_line};
use qasid::note::qr::{self, QrFormat};
use qasid::note::source::NoteSpec;
use qasid::note::{subset, Note, NoteError, NoteMirror, SignedNote, VerifiedNote};
use qasid::roots::{Anchor, Authority, Chain, RootError};
use serde_json::json;

use super::{load_secret_key, print_json, Failure};

/// Longest URI that still fits one SMS-length message and a QR code a phone reads easily.
const COMFORTABLE_URI_CHARS: usize = 600;

/// Shortest and longest `--expires`: a note must outlive its trip through a channel, and a
/// long-lived note hands out mirrors long after they may have been blocked or seized.
const MIN_EXPIRES: Duration = Duration::from_secs(60);
const MAX_EXPIRES: Duration = Duration::from_secs(366 * 86400);

/// TTL in the printed zone line: one hour, so a replaced note spreads within the hour.
const ZONE_TTL: u32 = 3600;

/// Signed mirror notes: fresh mirror addresses that travel as text, QR codes or DNS records.
#[derive(Debug, Subcommand)]
pub enum NoteCommand {
    Create(CreateArgs),
    Show(ShowArgs),
}

impl NoteCommand {
    pub fn run(self) -> Result<(), Failure> {
        match self {
            NoteCommand::Create(args) => args.run(),
            NoteCommand::Show(args) => args.run(),
        }
    }
}

/// Sign a mirror note and print its qasid:1:… URI.
///
/// The note lists mirror URLs, signed with the publisher key, so readers who trust that key
/// can use them however the note reached them (chat, SMS, QR code, DNS). Readers refuse a note
/// older (lower --sequence) than one they have seen; the default sequence is the current Unix
/// time in seconds, so a note made later always wins. Make the notes for several channels with
/// the same --sequence so that none of them replaces the others.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid note create --key keys/publisher.key --mirror https://m1.example/ --mirror https://m2.example/
  qasid note create --key keys/publisher.key --mirror tor:http://abc…xyz.onion/ --qr flyer.png
  qasid note create --key keys/publisher.key --mirror … --subset 3 --label telegram
  qasid note create --key keys/publisher.key --mirror … --dns _qasid.example.org

A mirror may be prefixed tor: (reach it over Tor; the default for .onion hosts) or proxy:
(blocked for direct connections).")]
pub struct CreateArgs {
    /// The publisher's secret key file (from `qasid keygen`).
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
    /// A mirror's base URL, optionally prefixed tor: or proxy: (repeat; at most 16 in a note).
    #[arg(long = "mirror", value_name = "URL", required = true)]
    mirrors: Vec<String>,
    /// How long readers accept the note (1m to 366d).
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = humantime::parse_duration)]
    expires: Duration,
    /// The channel this note is for: with --subset, picks that channel's mirrors.
    #[arg(long, value_name = "NAME", requires = "subset")]
    label: Option<String>,
    /// Put only N of the mirrors in the note, chosen by --label: the same label always gets
    /// the same N, another label an unrelated N, so one channel does not reveal every mirror.
    #[arg(long, value_name = "N", requires = "label", value_parser = clap::value_parser!(u64).range(1..=16))]
    subset: Option<u64>,
    /// Also write the note as a QR code (FILE.png or FILE.svg).
    #[arg(long, value_name = "FILE")]
    qr: Option<PathBuf>,
    /// Also print the DNS TXT record: its strings (at most 255 bytes each) and a zone-file
    /// line for NAME [default: _qasid].
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "_qasid")]
    dns: Option<String>,
    /// The note's sequence number [default: the Unix time in seconds now].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    sequence: Option<u64>,
}

impl CreateArgs {
    fn run(self) -> Result<(), Failure> {
        if !(MIN_EXPIRES..=MAX_EXPIRES).contains(&self.expires) {
            return Err(Failure::usage(anyhow::anyhow!(
                "--expires must be between 1 minute and 366 days"
            )));
        }
        let qr_format = match &self.qr {
            Some(path) => Some(QrFormat::from_path(path).ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "--qr {}: the file name must end in .png or .svg",
                    path.display()
                ))
            })?),
            None => None,
        };
        let mut mirrors = Vec::new();
        for text in &self.mirrors {
            let m = NoteMirror::parse(text).map_err(Failure::from)?;
            if !mirrors.contains(&m) {
                mirrors.push(m);
            }
        }
        if let (Some(n), Some(label)) = (self.subset, &self.label) {
            mirrors = subset(&mirrors, label, n as usize);
        }
        let key = load_secret_key(&self.key)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| Failure::runtime(anyhow::anyhow!("system clock: {e}")))?;
        let note = Note {
            publisher: key.public().id(),
            sequence: self.sequence.unwrap_or(now.as_secs()),
            expires: (now + self.expires).as_secs(),
            mirrors,
        };
        let uri = note.sign(&key).map_err(Failure::from)?.to_uri();
        if uri.len() > COMFORTABLE_URI_CHARS {
            tracing::warn!(
                "the note is {} characters, more than the {COMFORTABLE_URI_CHARS} that fit one \
                 SMS-length message; list fewer or shorter mirrors (--subset N --label CHANNEL)",
                uri.len()
            );
        }
        if let (Some(path), Some(format)) = (&self.qr, qr_format) {
            let image = qr::render(&uri, format).map_err(Failure::usage)?;
            write_new_file(path, &image)?;
            eprintln!("qasid: wrote the QR code to {}", path.display());
        }
        let mut out = std::io::stdout().lock();
        let mut text = format!("{uri}\n");
        if let Some(name) = &self.dns {
            let strings = txt_strings(&uri);
            text.push_str(&format!(
                "\nDNS TXT record for {name}: {} strings of at most 255 bytes, joined in order \
                 by resolvers:\n",
                strings.len()
            ));
            for s in &strings {
                text.push_str(&format!("  \"{s}\"\n"));
            }
            text.push_str(&format!(
                "Zone-file line to paste:\n{}\n",
                zone_line(name, ZONE_TTL, &strings)
            ));
        }
        out.write_all(text.as_bytes()).map_err(Failure::runtime)
    }
}

/// Writes `bytes` to `path` through a temp file beside it, so a reader of `path` never sees
/// half an image.
fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let fail = |e: std::io::Error| Failure::runtime(anyhow::anyhow!("{}: {e}", path.display()));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Verify a mirror note and print what it says.
///
/// NOTE is a qasid:1:… URI or a file holding one. The note must be signed by one of the
/// --publisher keys and unexpired; exit code 3 otherwise.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid note show qasid:1:S3Na… --publisher keys/publisher.pub
  qasid note show note.txt --publisher RWQ…base64… --json")]
pub struct ShowArgs {
    /// The note: a qasid:1:… URI or a file holding one.
    #[arg(value_name = "NOTE")]
    note: String,
    /// A trusted publisher: a publisher.pub file, its one-line base64 key, or its first root
    /// file (root.json: the keys it delegates for notes sign too) (repeat for
    /// several).
    #[arg(long = "publisher", value_name = "PUBKEY|ROOT", required = true)]
    publishers: Vec<String>,
    /// Print the note as JSON.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    fn run(self) -> Result<(), Failure> {
        // A root file as --publisher trusts what that root delegates for notes.
        let now = SystemTime::now();
        let trusted = self
            .publishers
            .iter()
            .map(|p| {
                let anchor = Anchor::from_arg(p)?;
                Ok(Chain::anchored(&anchor, None)?.authority(now))
            })
            .collect::<Result<Vec<Authority>, RootError>>()
            .map_err(|e| Failure::new(e.class(), e))?;
        let text = match NoteSpec::parse(&self.note).map_err(Failure::from)? {
            NoteSpec::Uri(uri) => uri,
            NoteSpec::File(path) => {
                let texts = qasid::reader::read_note_file(&path).map_err(Failure::runtime)?;
                texts.into_iter().next().ok_or_else(|| {
                    Failure::from(NoteError::NotANote(format!(
                        "{} holds no note",
                        path.display()
                    )))
                })?
            }
            other => {
                return Err(Failure::usage(anyhow::anyhow!(
                    "note show reads a qasid:1:… URI or a file; to use {other}, run \
                     `qasid fetch --note {other}`"
                )))
            }
        };
        let verified = SignedNote::from_uri(&text)
            .and_then(|s| s.verify(&trusted))
            .map_err(Failure::from)?;
        let fresh = verified.check_fresh(SystemTime::now());
        if !self.json {
            print_note(&verified);
        }
        let fields = note_json(&verified);
        match fresh {
            Ok(()) if self.json => print_json(&fields),
            Ok(()) => Ok(()),
            Err(e) => Err(Failure::from(e).with_json(fields)),
        }
    }
}

fn print_note(v: &VerifiedNote) {
    let n = v.note();
    println!(
        "note of publisher {} · sequence {} · expires {} · {} mirrors · signature ok",
        v.publisher().id(),
        n.sequence,
        humantime::format_rfc3339_seconds(v.expires()),
        n.mirrors.len()
    );
    for m in &n.mirrors {
        println!("  {:<6}  {}", m.hint.as_str(), m.url);
    }
}

fn note_json(v: &VerifiedNote) -> serde_json::Value {
    let n = v.note();
    json!({
        "publisher": super::json::publisher(v.publisher()),
        "sequence": n.sequence,
        "expires": humantime::format_rfc3339_seconds(v.expires()).to_string(),
        "mirrors": n.mirrors.iter().map(|m| json!({"url": m.url.as_str(), "hint": m.hint})).collect::<Vec<_>>(),
        "uri": v.signed().to_uri(),
    })
}
