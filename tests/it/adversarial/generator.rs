//! The adversarial corpus generator: builds a small publishing world on disk (three trusted or
//! untrusted keys, real bundles, a three-publish history and its rollback, freeze, fork and a
//! foreign publisher's repo) and derives from it every malicious input of the corpus, each with
//! its attack class, the entry points it applies to and the specific reason each must give.
//!
//! Expected reasons are written from the formats' rules and the documented error texts, never
//! computed by running the code under test; only sizes, hashes and key ids (which the reasons
//! quote) come from the generated data. Everything is deterministic except signing times, which
//! no reason quotes, so the case table in `README.md` is stable.
//!
//! The world:
//! - `publisher` (trusted): alpha v1 (sequence 1), beta v1 (sequence 2), gamma v1 (sequence 3).
//!   Stores and readers start out holding sequence 2; the good mirror serves sequence 3.
//! - `insider` (trusted): a second publisher whose signing pipeline is assumed broken. Its signed
//!   index lists the hostile bundles, so that sync and the reader get past the hash check and
//!   it is the bundle verifier that must refuse them ("listed" cases).
//! - `forger` (trusted by nobody): its own authentic repo, and signatures over anything.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use qasid::bundle::{self, CreateOptions};
use qasid::content_id::ContentId;
use qasid::index::layout::{on_disk, PublisherLayout};
use qasid::index::{
    ArticleFields, ArticleVersion, EncodedPiece, Entry, Head, HeadFields, LogRef, ObjectRef,
    PieceRef, SignedHead,
};
use qasid::keys::{Domain, PublicKey, SecretKey};
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::reader::Fate;
use qasid::repo::{PublishRequest, Repo};
use qasid::ErrorClass;

use super::hostile::{Reply, Scene};
use crate::bundle_support::{
    deflate, file_entry, manifest_json, manifest_json_with, signed_metadata, RawEntry, RawZip,
    ARTICLE, METHOD_DEFLATE,
};

pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// The attack classes of the README's security table, as the corpus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Tampering,
    ForeignKey,
    Rollback,
    Freeze,
    MixAndMatch,
    EndlessData,
    ZipBomb,
    ZipSlip,
    Symlink,
    NameCollision,
    HiddenData,
    MalformedUtf8,
    HugeJson,
    DeepNesting,
    DuplicateKeys,
    ContentType,
    Redirect,
    SlowLoris,
    Respelled,
}

impl Class {
    pub const ALL: [Class; 19] = [
        Class::Tampering,
        Class::ForeignKey,
        Class::Rollback,
        Class::Freeze,
        Class::MixAndMatch,
        Class::EndlessData,
        Class::ZipBomb,
        Class::ZipSlip,
        Class::Symlink,
        Class::NameCollision,
        Class::HiddenData,
        Class::MalformedUtf8,
        Class::HugeJson,
        Class::DeepNesting,
        Class::DuplicateKeys,
        Class::ContentType,
        Class::Redirect,
        Class::SlowLoris,
        Class::Respelled,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Class::Tampering => "tampering",
            Class::ForeignKey => "foreign key",
            Class::Rollback => "rollback",
            Class::Freeze => "freeze",
            Class::MixAndMatch => "mix-and-match",
            Class::EndlessData => "endless data",
            Class::ZipBomb => "zip bomb",
            Class::ZipSlip => "zip slip",
            Class::Symlink => "symlink / special entry",
            Class::NameCollision => "colliding names",
            Class::HiddenData => "prepended / trailing data",
            Class::MalformedUtf8 => "malformed UTF-8",
            Class::HugeJson => "huge JSON",
            Class::DeepNesting => "deep nesting",
            Class::DuplicateKeys => "duplicate JSON keys",
            Class::ContentType => "wrong content type",
            Class::Redirect => "redirect to another host",
            Class::SlowLoris => "slow-loris",
            Class::Respelled => "re-spelled signed JSON",
        }
    }
}

/// Which trusted key an entry point checks a case against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Publisher,
    Insider,
}

/// `qasid verify` (library and binary) of a bundle file.
pub struct VerifyCase {
    pub bytes: Vec<u8>,
    pub publisher: Who,
    /// A substring of the error's text.
    pub reason: String,
}

/// A request to the push endpoint.
pub enum PushRequest {
    /// A PUT of `body` to `path` with its true `Content-Length` and these extra headers.
    Put {
        path: String,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// Raw bytes on a fresh connection (the answer read until the server closes).
    Raw(Vec<u8>),
    /// A request line and half a header, then one byte a second: a slow-loris client.
    SlowHeaders,
}

pub struct PushCase {
    pub request: PushRequest,
    pub status: u16,
    /// A substring of the answer (the JSON `reason`, or the body for non-JSON answers).
    pub reason: String,
}

/// What a hostile upstream or mirror serves, for sync and the reader.
pub struct NetCase {
    pub scene: Scene,
    /// The trusted key the reader is given (sync always trusts both).
    pub reader_publisher: Who,
    /// The article the reader fetches after updating (`None`: the index phase is the test).
    pub fetch: Option<String>,
    pub sync: Option<SyncExpect>,
    pub reader: Option<ReaderExpect>,
}

pub struct SyncExpect {
    /// A substring of the hostile upstream's error (with its sources).
    pub reason: String,
    pub class: ErrorClass,
}

pub struct ReaderExpect {
    /// The hostile mirror's fate in the report, whose detail must hold the reason.
    pub fate: Option<Fate>,
    /// The class of the run's error (exit 3 for verification, 1 for runtime), whose text with
    /// its sources must hold the reason. `None`: the run succeeds (see `warning`).
    pub error: Option<ErrorClass>,
    /// The report must carry a warning holding the reason.
    pub warning: bool,
    pub reason: String,
}

pub struct Case {
    pub name: String,
    pub class: Class,
    pub attack: String,
    pub verify: Option<VerifyCase>,
    pub push: Option<PushCase>,
    pub net: Option<NetCase>,
}

impl Case {
    fn new(name: &str, class: Class, attack: &str) -> Case {
        Case {
            name: name.to_owned(),
            class,
            attack: attack.to_owned(),
            verify: None,
            push: None,
            net: None,
        }
    }
}

/// A bundle of the world: its file and identity.
#[derive(Debug, Clone)]
pub struct Made {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: ContentId,
    pub size: u64,
    /// The incompressible bytes of its `images/photo.bin`.
    pub noise: Vec<u8>,
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub publisher: SecretKey,
    pub insider: SecretKey,
    pub forger: SecretKey,
    pub alpha: Made,
    pub gamma: Made,
    /// gamma v1, signed by the forger.
    pub forged_gamma: Made,
    /// epsilon v1, signed by the insider (authentic).
    pub epsilon: Made,
    /// The publisher's repo after sequence 1, 2 and 3.
    pub seq1: PathBuf,
    pub seq2: PathBuf,
    pub good: PathBuf,
    /// Sequence 2, then a sequence 3 that expired a day ago.
    pub frozen: PathBuf,
    /// Sequence 1, then another history: zeta (2'), gamma (3').
    pub fork: PathBuf,
    /// The forger's own repo: gamma v1 signed by the forger, sequence 1.
    pub forger_repo: PathBuf,
    /// The insider's unmodified raw bundle (the control every hostile bundle derives from).
    pub insider_control: Vec<u8>,
    now: SystemTime,
}

fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in seed.bytes() {
        x = x.rotate_left(9) ^ u64::from(b);
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn make_bundle(dir: &Path, key: &SecretKey, name: &str, version: u64) -> Made {
    let src = dir.join(format!("src-{}-{name}-{version}", key.public().id()));
    std::fs::create_dir_all(src.join("images")).unwrap();
    std::fs::write(
        src.join("article.md"),
        format!(
            "---\ntitle: Report {name} (v{version})\nauthor: Qasid Desk\ndate: 2026-02-14\n\
             language: en\n---\n\n# Report {name}\n\nBody of {name}, version {version}.\n"
        ),
    )
    .unwrap();
    let noise = noise(&format!("{}{name}{version}", key.public().id()), 3000);
    std::fs::write(src.join("images").join("photo.bin"), &noise).unwrap();
    let out = dir.join(format!("{}-{name}-v{version}.zip", key.public().id()));
    let created = bundle::create(
        &src,
        key,
        &out,
        &CreateOptions {
            name: Some(name.to_owned()),
            version: Some(version),
            limits: BundleLimits::default(),
        },
    )
    .unwrap();
    Made {
        path: created.path().to_owned(),
        bytes: std::fs::read(created.path()).unwrap(),
        sha256: created.sha256(),
        size: created.size(),
        noise,
    }
}

fn publish(
    root: &Path,
    key: &SecretKey,
    bundles: &[PathBuf],
    now: SystemTime,
    expires_in: Duration,
) {
    Repo::new(
        root,
        key.public(),
        IndexLimits::default(),
        BundleLimits::default(),
    )
    .publish(
        key,
        &PublishRequest {
            bundles: bundles.to_vec(),
            retract: Vec::new(),
            refresh: bundles.is_empty(),
            mirrors: None,
            expires_in,
            now,
        },
    )
    .unwrap();
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An `index.json` envelope around `head` bytes and a signature, as the publisher writes it.
pub fn envelope(head: &[u8], signature: &[u8]) -> Vec<u8> {
    format!(
        "{{\"format\":\"qasid-index-envelope/1\",\"head\":\"{}\",\"signature\":\"{}\"}}\n",
        B64.encode(head),
        B64.encode(signature)
    )
    .into_bytes()
}

/// The head bytes and signature of an envelope.
fn open_envelope(envelope: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let v: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let field = |f: &str| B64.decode(v[f].as_str().unwrap()).unwrap();
    (field("head"), field("signature"))
}

/// Replaces the base64 character at `at` in field `field` of an envelope by another valid one.
fn flip_base64(envelope: &[u8], field: &str, at: usize) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let mut text: Vec<u8> = v[field].as_str().unwrap().as_bytes().to_vec();
    text[at] = if text[at] == b'A' { b'B' } else { b'A' };
    let text = String::from_utf8(text).unwrap();
    let (head, signature) = match field {
        "head" => (text, v["signature"].as_str().unwrap().to_owned()),
        _ => (v["head"].as_str().unwrap().to_owned(), text),
    };
    format!(
        "{{\"format\":\"qasid-index-envelope/1\",\"head\":\"{head}\",\
         \"signature\":\"{signature}\"}}\n"
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in haystack")
}

/// Layout paths (with a leading `/`) of a publisher's objects.
pub struct Paths(PublisherLayout);

impl Paths {
    pub fn of(key: &PublicKey) -> Paths {
        Paths(PublisherLayout::new(key))
    }
    pub fn index(&self) -> String {
        format!("/{}", self.0.index())
    }
    pub fn bundle(&self, id: &ContentId) -> String {
        format!("/{}", self.0.bundle(id))
    }
    pub fn piece(&self, id: &ContentId) -> String {
        format!("/{}", self.0.piece(id))
    }
    pub fn dir(&self) -> String {
        format!("/{}", self.0.dir())
    }
}

/// The files of the insider's raw bundles, sorted by path.
fn base_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("article.md", ARTICLE.as_bytes().to_vec()),
        ("images/a.png", noise("insider-image", 2000)),
        (
            "style.css",
            b"body { direction: rtl; font-family: serif; }\n".repeat(4),
        ),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files.iter().map(|(p, c)| (*p, c.as_slice())).collect()
}

impl World {
    pub fn build() -> World {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let publisher = SecretKey::from_seed(&[0xA1; 32]);
        // The insider is bundle_support's test key, so its raw-zip helpers sign for it.
        let insider = crate::bundle_support::key();
        let forger = SecretKey::from_seed(&[0xF0; 32]);
        let alpha = make_bundle(d, &publisher, "alpha", 1);
        let beta = make_bundle(d, &publisher, "beta", 1);
        let gamma = make_bundle(d, &publisher, "gamma", 1);
        let zeta = make_bundle(d, &publisher, "zeta", 1);
        let forged_gamma = make_bundle(d, &forger, "gamma", 1);
        let epsilon = make_bundle(d, &insider, "epsilon", 1);
        let now = SystemTime::now();
        let file = |made: &Made| made.path.clone();

        let seq1 = d.join("repo-seq1");
        publish(&seq1, &publisher, &[file(&alpha)], now - 3 * DAY, 30 * DAY);
        let seq2 = d.join("repo-seq2");
        copy_tree(&seq1, &seq2);
        publish(&seq2, &publisher, &[file(&beta)], now - 2 * DAY, 30 * DAY);
        let good = d.join("repo-good");
        copy_tree(&seq2, &good);
        publish(&good, &publisher, &[file(&gamma)], now - DAY, 30 * DAY);
        let frozen = d.join("repo-frozen");
        copy_tree(&seq2, &frozen);
        publish(
            &frozen,
            &publisher,
            &[file(&gamma)],
            now - DAY,
            Duration::from_secs(60),
        );
        let fork = d.join("repo-fork");
        copy_tree(&seq1, &fork);
        publish(&fork, &publisher, &[file(&zeta)], now - 2 * DAY, 30 * DAY);
        publish(&fork, &publisher, &[file(&gamma)], now - DAY, 30 * DAY);
        let forger_repo = d.join("repo-forger");
        publish(
            &forger_repo,
            &forger,
            std::slice::from_ref(&forged_gamma.path),
            now - DAY,
            30 * DAY,
        );
        let insider_control = RawZip::new(raw_bundle(&insider, &base_files())).to_bytes();
        World {
            dir,
            publisher,
            insider,
            forger,
            alpha,
            gamma,
            forged_gamma,
            epsilon,
            seq1,
            seq2,
            good,
            frozen,
            fork,
            forger_repo,
            insider_control,
            now,
        }
    }

    pub fn key(&self, who: Who) -> &SecretKey {
        match who {
            Who::Publisher => &self.publisher,
            Who::Insider => &self.insider,
        }
    }

    pub fn index_of(&self, repo: &Path, key: &SecretKey) -> Vec<u8> {
        std::fs::read(on_disk(repo, &PublisherLayout::new(key.public()).index())).unwrap()
    }

    fn piece_bytes(&self, repo: &Path, key: &SecretKey, id: &ContentId) -> Vec<u8> {
        std::fs::read(on_disk(repo, &PublisherLayout::new(key.public()).piece(id))).unwrap()
    }

    /// The pieces of the good sequence 3 that a holder of sequence 2 may download.
    fn new_pieces(&self) -> Vec<PieceRef> {
        let limits = IndexLimits::default();
        let held = SignedHead::verify(
            &self.index_of(&self.seq2, &self.publisher),
            self.publisher.public(),
            &limits,
        )
        .unwrap();
        let good = SignedHead::verify(
            &self.index_of(&self.good, &self.publisher),
            self.publisher.public(),
            &limits,
        )
        .unwrap();
        let old: Vec<PieceRef> = held.head().log().pieces().to_vec();
        let mut new: Vec<PieceRef> = good.head().log().pieces().to_vec();
        new.push(*good.head().log().batch());
        new.retain(|p| !old.contains(p));
        new.dedup();
        new
    }

    /// The batch piece of the good sequence 3 (what an up-to-date holder downloads).
    fn good_batch(&self) -> PieceRef {
        let good = SignedHead::verify(
            &self.index_of(&self.good, &self.publisher),
            self.publisher.public(),
            &IndexLimits::default(),
        )
        .unwrap();
        *good.head().log().batch()
    }

    /// A folder holding the insider's repo layout: a signed sequence-1 index listing `entry`
    /// (name "hostile" v1 unless the case says otherwise) whose bundle is `bundle`.
    pub fn insider_listing(&self, case: &str, name: &str, version: u64, bundle: &[u8]) -> PathBuf {
        let limits = IndexLimits::default();
        let object = ObjectRef {
            sha256: ContentId::of_bytes(bundle),
            size: bundle.len() as u64,
        };
        let entry = Entry::Add(
            ArticleVersion::new(
                ArticleFields {
                    name: name.to_owned(),
                    version,
                    title: "Mirrors keep the news alive".into(),
                    date: "2026-03-01".into(),
                    language: "en".into(),
                    author: "Qasid Desk".into(),
                    bundle: object,
                },
                &limits,
            )
            .unwrap(),
        );
        let piece = EncodedPiece::new(self.insider.public(), 0, &[entry]);
        let root = self.insider_repo(case, &[(piece.bytes.clone(), piece.reference)]);
        let layout = PublisherLayout::new(self.insider.public());
        let path = on_disk(&root, &layout.bundle(&object.sha256));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bundle).unwrap();
        root
    }

    /// A folder holding an insider index (sequence 1) whose log is `pieces` (the last is the
    /// batch), with the piece files.
    fn insider_repo(&self, case: &str, pieces: &[(Vec<u8>, PieceRef)]) -> PathBuf {
        let limits = IndexLimits::default();
        let refs: Vec<PieceRef> = pieces.iter().map(|(_, r)| *r).collect();
        let entries = refs.iter().map(|r| r.count).sum();
        let log = LogRef::new(entries, refs.clone(), *refs.last().unwrap(), &limits).unwrap();
        let head = Head::new(
            HeadFields {
                publisher: self.insider.public().clone(),
                sequence: 1,
                issued: self.now - Duration::from_secs(3600),
                expires: self.now + 30 * DAY,
                previous: None,
                mirrors: Vec::new(),
                log,
            },
            &limits,
        )
        .unwrap();
        let signed = SignedHead::sign(head, &self.insider).unwrap();
        let root = self.dir.path().join(format!("insider-{case}"));
        let layout = PublisherLayout::new(self.insider.public());
        let index = on_disk(&root, &layout.index());
        std::fs::create_dir_all(index.parent().unwrap().join("pieces")).unwrap();
        std::fs::write(&index, signed.envelope()).unwrap();
        for (bytes, r) in pieces {
            std::fs::write(on_disk(&root, &layout.piece(&r.sha256)), bytes).unwrap();
        }
        root
    }

    /// The reasons sync and the reader give when `served` arrives where the signed index
    /// promises the bundle `expected`: the size cap, then the sha256, before the zip is read.
    fn substituted(&self, served: &[u8], expected: &Made) -> String {
        let size = expected.size;
        match (served.len() as u64).cmp(&size) {
            std::cmp::Ordering::Greater => format!("more than the {size} bytes the index"),
            std::cmp::Ordering::Less => format!("of the {size} bytes the index gives"),
            std::cmp::Ordering::Equal => "sha256 mismatch".to_owned(),
        }
    }

    pub fn cases(&self) -> Vec<Case> {
        let mut cases = Vec::new();
        self.bundle_cases(&mut cases);
        self.served_bundle_cases(&mut cases);
        self.index_cases(&mut cases);
        self.piece_cases(&mut cases);
        self.http_cases(&mut cases);
        self.push_request_cases(&mut cases);
        cases
    }

    // ---- hostile bundles: verify, push, and sync and the reader through an insider listing ----

    /// A hostile bundle of the insider's, refused with `reason` by verify, push, sync and the
    /// reader alike.
    fn insider_bundle(&self, mut case: Case, bytes: Vec<u8>, reason: &str) -> Case {
        let insider = Paths::of(self.insider.public());
        let id = ContentId::of_bytes(&bytes);
        let root = self.insider_listing(&case.name, "hostile", 1, &bytes);
        case.push = Some(PushCase {
            request: PushRequest::Put {
                path: insider.bundle(&id),
                body: bytes.clone(),
                headers: Vec::new(),
            },
            status: 422,
            reason: reason.to_owned(),
        });
        case.net = Some(NetCase {
            scene: Scene::files(&root),
            reader_publisher: Who::Insider,
            fetch: Some("hostile".into()),
            sync: Some(SyncExpect {
                reason: reason.to_owned(),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: None,
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: reason.to_owned(),
            }),
        });
        case.verify = Some(VerifyCase {
            bytes,
            publisher: Who::Insider,
            reason: reason.to_owned(),
        });
        case
    }

    fn bundle_cases(&self, cases: &mut Vec<Case>) {
        let files = base_files();
        let ins = &self.insider;
        let ins_id = ins.public().id();
        let entries = || raw_bundle(ins, &files);
        let zip = |entries: Vec<RawEntry>| RawZip::new(entries).to_bytes();
        let manifest = content(&entries()[0]);

        // -- tampering: one byte in each region --
        let mut e = entries();
        e[0].data[40] ^= 0x01;
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-manifest-byte",
                Class::Tampering,
                "one byte of manifest.json flipped (the zip's crc32 left as it was)",
            ),
            zip(e),
            "entry manifest.json: crc32 mismatch",
        ));
        let mut e = entries();
        let mut m = manifest.clone();
        m[40] ^= 0x01;
        e[0].set_content(&m);
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-manifest-byte-crc-fixed",
                Class::Tampering,
                "one byte of manifest.json flipped and the crc32 recomputed",
            ),
            zip(e),
            &format!("signature does not match publisher {ins_id}"),
        ));
        let mut e = entries();
        let mut sig = content(&e[1]);
        sig[10] ^= 0x80;
        e[1].set_content(&sig);
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-signature-byte",
                Class::Tampering,
                "one byte of manifest.sig flipped (crc32 recomputed)",
            ),
            zip(e),
            &format!("signature does not match publisher {ins_id}"),
        ));
        let mut e = entries();
        let mut image = content(&e[3]);
        image[100] ^= 0x01;
        e[3].set_content(&image);
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-stored-file-byte",
                Class::Tampering,
                "one byte of a stored file flipped, crc32 recomputed",
            ),
            zip(e),
            "images/a.png: sha256 mismatch (manifest says",
        ));
        let mut e = entries();
        assert_eq!(e[4].method, METHOD_DEFLATE);
        // BTYPE 11 (reserved) in the first block header: no inflater accepts it.
        e[4].data[0] |= 0b110;
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-deflate-stream",
                Class::Tampering,
                "the first deflate block header of a compressed file made invalid",
            ),
            zip(e),
            "entry files/style.css: corrupt deflate data (invalid stream)",
        ));
        let mut e = entries();
        e[3].flags |= 0x0002;
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-local-header",
                Class::Tampering,
                "a general-purpose flag bit set in a local file header",
            ),
            zip(e),
            "entry files/images/a.png: general purpose flags 0x0002 are not allowed",
        ));
        let mut raw = RawZip::new(entries());
        let mut central = entries();
        central[2].crc32 ^= 1;
        raw.central = Some(central);
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-central-directory",
                Class::Tampering,
                "a crc32 in the central directory changed",
            ),
            raw.to_bytes(),
            "entry files/article.md: central directory crc32 does not match the local header",
        ));
        let mut bytes = zip(entries());
        let end = bytes.len() - 22;
        bytes[end + 10] = 4; // total entries: 4 instead of 5
        cases.push(self.insider_bundle(
            Case::new(
                "tamper-end-record",
                Class::Tampering,
                "the entry count of the end of central directory record changed",
            ),
            bytes,
            "bundle: end of central directory entry count is wrong",
        ));
        let bytes = zip(entries());
        cases.push(self.insider_bundle(
            Case::new(
                "truncated-bundle",
                Class::Tampering,
                "the bundle cut off in the middle of a file",
            ),
            bytes[..bytes.len() * 6 / 10].to_vec(),
            "bundle: truncated at byte",
        ));

        // -- foreign keys --
        let forged = RawZip::new(raw_bundle(&self.forger, &files)).to_bytes();
        cases.push(self.insider_bundle(
            Case::new(
                "foreign-key-bundle",
                Class::ForeignKey,
                "a well-formed bundle signed by the forger's key, its manifest naming the forger",
            ),
            forged,
            &format!("signature does not match publisher {ins_id}"),
        ));
        let mut e = raw_bundle(ins, &files);
        let claims = manifest_json(self.forger.public(), &borrowed(&files));
        e.splice(0..2, signed_metadata(ins, &claims));
        cases.push(self.insider_bundle(
            Case::new(
                "foreign-key-manifest-publisher",
                Class::ForeignKey,
                "signed by the trusted key, but the manifest names the forger as publisher",
            ),
            zip(e),
            &format!(
                "manifest names publisher {}, expected {ins_id}",
                self.forger.public().id()
            ),
        ));
        let mut e = entries();
        let cross = ins.sign(Domain::IndexHead, &manifest);
        e[1] = RawEntry::stored("manifest.sig", &cross);
        cases.push(self.insider_bundle(
            Case::new(
                "cross-domain-signature-bundle",
                Class::ForeignKey,
                "manifest.sig is the trusted key's signature over the manifest in the index domain",
            ),
            zip(e),
            &format!("signature does not match publisher {ins_id}"),
        ));

        // -- zip bombs --
        let zeros = vec![0u8; 20 << 20];
        let mut bomb_files = files.clone();
        bomb_files.insert(2, ("images/zeros.txt", zeros.clone()));
        let mut e = raw_bundle(ins, &bomb_files);
        let ratio = (20u64 << 20) / e[4].compressed_size as u64;
        cases.push(self.insider_bundle(
            Case::new(
                "zip-bomb-ratio",
                Class::ZipBomb,
                "20 MiB of zeros deflated to ~20 KiB (ratio ~1000)",
            ),
            zip(std::mem::take(&mut e)),
            &format!("entry files/images/zeros.txt: compression ratio {ratio} exceeds limit 100"),
        ));
        let small = b"tiny".repeat(250);
        let mut lie_files = files.clone();
        lie_files.insert(2, ("images/lie.txt", small.clone()));
        let mut e = raw_bundle(ins, &lie_files);
        let bomb = deflate(&zeros);
        e[4].data = bomb;
        e[4].compressed_size = e[4].data.len() as u32;
        cases.push(self.insider_bundle(
            Case::new(
                "zip-bomb-size-lie",
                Class::ZipBomb,
                "an entry declaring 1000 bytes (as its \
                manifest does) whose deflate stream holds 20 MiB",
            ),
            zip(e),
            "entry files/images/lie.txt: data does not match its declared size of 1000 \
                bytes",
        ));
        let mut total = borrowed(&files);
        let empty: &[u8] = b"";
        total.extend([
            ("video/1.bin", empty),
            ("video/2.bin", empty),
            ("video/3.bin", empty),
        ]);
        let huge = manifest_json_with(ins.public(), &total, |path, size| {
            if path.starts_with("video/") {
                1 << 30
            } else {
                size
            }
        });
        let e = signed_metadata(ins, &huge);
        cases.push(self.insider_bundle(
            Case::new(
                "zip-bomb-total",
                Class::ZipBomb,
                "a signed manifest declaring three 1 GiB files (3 GiB in all)",
            ),
            // The running total is reported where it first passes the limit: at the second video.
            zip(e),
            &format!(
                "files add up to {} bytes, limit is {}",
                2u64 * (1 << 30) + files.iter().map(|f| f.1.len() as u64).sum::<u64>(),
                2u64 << 30
            ),
        ));
        let names: Vec<String> = (0..5000).map(|i| format!("f/{i:04}.txt")).collect();
        let mut many: Vec<(&str, &[u8])> = vec![("article.md", ARTICLE.as_bytes())];
        many.extend(names.iter().map(|n| (n.as_str(), empty)));
        let e = signed_metadata(ins, &manifest_json(ins.public(), &many));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-bomb-file-count",
                Class::ZipBomb,
                "a signed manifest listing 5001 files",
            ),
            zip(e),
            "5001 files, limit is 4096",
        ));

        // -- zip slip: the entry named first after the signature --
        let slip = |name: &[u8]| {
            let mut e = entries();
            let mut evil = RawEntry::stored("x", b"#!/bin/sh\necho pwned\n");
            evil.name = name.to_vec();
            evil.flags = if name.is_ascii() { 0 } else { 1 << 11 };
            e.insert(2, evil);
            zip(e)
        };
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-dotdot",
                Class::ZipSlip,
                "an entry named files/../../../tmp/qasid-pwned",
            ),
            slip(b"files/../../../tmp/qasid-pwned"),
            "entry files/../../../tmp/qasid-pwned: path escapes bundle",
        ));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-absolute",
                Class::ZipSlip,
                "an entry named files//etc/cron.d/qasid (absolute once files/ is stripped)",
            ),
            slip(b"files//etc/cron.d/qasid"),
            "entry files//etc/cron.d/qasid: absolute path",
        ));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-backslash",
                Class::ZipSlip,
                "an entry named files/..\\..\\evil.bat",
            ),
            slip(b"files/..\\..\\evil.bat"),
            "backslash in path",
        ));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-percent-encoded",
                Class::ZipSlip,
                "an entry named files/%2e%2e/%2e%2e/evil (never decoded, and not in the manifest)",
            ),
            slip(b"files/%2e%2e/%2e%2e/evil"),
            "entry files/%2e%2e/%2e%2e/evil: not in manifest",
        ));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-overlong-utf8",
                Class::ZipSlip,
                "an entry named files/\\xc0\\xae\\xc0\\xae/evil (overlong UTF-8 for ..)",
            ),
            slip(b"files/\xc0\xae\xc0\xae/evil"),
            "name is not UTF-8",
        ));
        let mut slip_files = borrowed(&files);
        slip_files.insert(0, ("../evil.sh", b"echo pwned\n"));
        let e = signed_metadata(ins, &manifest_json(ins.public(), &slip_files));
        cases.push(self.insider_bundle(
            Case::new(
                "zip-slip-in-manifest",
                Class::ZipSlip,
                "a signed manifest listing ../evil.sh",
            ),
            zip(e),
            "file ../evil.sh: path escapes bundle",
        ));

        // -- symlinks and other special entries --
        let mut link_files = files.clone();
        link_files[1].1 = b"../../../../etc/passwd".to_vec();
        let mut raw = RawZip::new(raw_bundle(ins, &link_files));
        let mut central = raw.entries.clone();
        central[3].external_attributes = 0o120777 << 16;
        raw.central = Some(central);
        cases.push(self.insider_bundle(
            Case::new(
                "symlink-entry",
                Class::Symlink,
                "files/images/a.png marked as a symlink to \
                ../../../../etc/passwd in the central directory",
            ),
            raw.to_bytes(),
            "entry files/images/a.png: symlink entries are not allowed",
        ));
        let mut e = entries();
        e.insert(2, RawEntry::stored("files/images/", b""));
        cases.push(self.insider_bundle(
            Case::new(
                "directory-entry",
                Class::Symlink,
                "a directory entry files/images/",
            ),
            zip(e),
            "entry files/images/: directory entries are not allowed",
        ));
        let mut raw = RawZip::new(entries());
        let mut central = raw.entries.clone();
        central[3].external_attributes = 0o020644 << 16;
        raw.central = Some(central);
        cases.push(self.insider_bundle(
            Case::new(
                "device-entry",
                Class::Symlink,
                "files/images/a.png marked as a character device",
            ),
            raw.to_bytes(),
            "entry files/images/a.png: device, pipe and socket entries are not allowed",
        ));

        // -- colliding names --
        let mut col = borrowed(&files);
        col.insert(1, ("images/A.png", b"upper"));
        let e = signed_metadata(ins, &manifest_json(ins.public(), &col));
        cases.push(self.insider_bundle(
            Case::new(
                "case-colliding-names",
                Class::NameCollision,
                "a signed manifest listing images/A.png and images/a.png",
            ),
            zip(e),
            "differ only by case or Unicode normalisation",
        ));
        let nfd = "images/cafe\u{301}.png";
        let nfc = "images/caf\u{e9}.png";
        let mut col = borrowed(&files);
        col.insert(2, (nfd, b"decomposed"));
        col.insert(3, (nfc, b"composed"));
        let e = signed_metadata(ins, &manifest_json(ins.public(), &col));
        cases.push(self.insider_bundle(
            Case::new(
                "normalisation-colliding-names",
                Class::NameCollision,
                "a signed manifest listing café.png in NFD and in NFC",
            ),
            zip(e),
            "differ only by case or Unicode normalisation",
        ));
        let mut e = entries();
        let again = e[2].clone();
        e.insert(3, again);
        cases.push(self.insider_bundle(
            Case::new(
                "duplicate-zip-entry",
                Class::NameCollision,
                "files/article.md stored twice (the manifest lists it once)",
            ),
            zip(e),
            "entry files/article.md: duplicate entry",
        ));
        let mut e = entries();
        e[2].name = b"files/ARTICLE.md".to_vec();
        cases.push(self.insider_bundle(
            Case::new(
                "case-variant-zip-entry",
                Class::NameCollision,
                "the zip holds files/ARTICLE.md where the manifest lists article.md",
            ),
            zip(e),
            "entry files/ARTICLE.md: not in manifest",
        ));

        // -- hidden data --
        let mut raw = RawZip::new(entries());
        raw.prefix = b"#!/bin/sh\nexec rm -rf ~ #".to_vec();
        raw.prefix.resize(100, b' ');
        cases.push(self.insider_bundle(
            Case::new(
                "prepended-data",
                Class::HiddenData,
                "100 bytes of shell script before the first entry (offsets adjusted)",
            ),
            raw.to_bytes(),
            "bundle: data hidden before the first entry (100 bytes)",
        ));
        let mut raw = RawZip::new(entries());
        raw.trailing = b"<script>alert(1)</script>".repeat(4);
        cases.push(self.insider_bundle(
            Case::new(
                "trailing-data",
                Class::HiddenData,
                "100 bytes after the end of central directory record",
            ),
            raw.to_bytes(),
            "bundle: 100 bytes of trailing data after the end of the zip",
        ));
        let mut raw = RawZip::new(entries());
        raw.gap = Some((2, b"HIDDEN PAYLOAD".to_vec()));
        let at = {
            let e = entries();
            e[..3]
                .iter()
                .map(|x| 30 + x.name.len() + x.data.len())
                .sum::<usize>()
        };
        cases.push(self.insider_bundle(
            Case::new(
                "data-between-entries",
                Class::HiddenData,
                "14 bytes hidden between two entries",
            ),
            raw.to_bytes(),
            &format!("bundle: unexpected data at byte {at}, between entries"),
        ));
        let mut raw = RawZip::new(entries());
        raw.comment = b"hidden".to_vec();
        cases.push(self.insider_bundle(
            Case::new("zip-comment", Class::HiddenData, "an archive comment"),
            raw.to_bytes(),
            "bundle: zip comments are not allowed",
        ));
        let mut e = entries();
        e[3].extra = vec![0x55, 0x54, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
        cases.push(self.insider_bundle(
            Case::new(
                "extra-field",
                Class::HiddenData,
                "an extra field in a local header",
            ),
            zip(e),
            "entry files/images/a.png: extra fields are not allowed",
        ));

        // -- malformed UTF-8 --
        let mut e = entries();
        e[3].name = b"files/images/\xff\xfe.png".to_vec();
        e[3].flags = 1 << 11;
        cases.push(self.insider_bundle(
            Case::new(
                "utf8-entry-name",
                Class::MalformedUtf8,
                "an entry name with the bytes ff fe, flagged as UTF-8",
            ),
            zip(e),
            "name is not UTF-8",
        ));
        let bad = String::from_utf8(manifest.clone())
            .unwrap()
            .replace("Qasid Desk", "Qasid \u{1}Desk");
        let mut bad = bad.into_bytes();
        let at = find(&bad, b"\x01");
        bad[at] = 0xff;
        let e = signed_metadata(ins, &bad);
        cases.push(self.insider_bundle(
            Case::new(
                "utf8-manifest",
                Class::MalformedUtf8,
                "a signed manifest whose author holds the byte ff",
            ),
            zip(e),
            "manifest.json: invalid manifest JSON",
        ));

        // -- huge and deep JSON, duplicate keys --
        let mut big = manifest.clone();
        big.truncate(big.len() - 2);
        big.extend(std::iter::repeat_n(b' ', 2 << 20));
        big.extend_from_slice(b"}\n");
        let e = signed_metadata(ins, &big);
        cases.push(self.insider_bundle(
            Case::new(
                "huge-manifest",
                Class::HugeJson,
                "a signed manifest of 2 MiB (whitespace)",
            ),
            zip(e),
            &format!("manifest is {} bytes, limit is 1048576", big.len()),
        ));
        let deep = [b"[".repeat(10_000), b"]".repeat(10_000)].concat();
        let e = signed_metadata(ins, &deep);
        cases.push(self.insider_bundle(
            Case::new(
                "deep-nesting-manifest",
                Class::DeepNesting,
                "a signed manifest nested 10,000 arrays deep",
            ),
            zip(e),
            "manifest.json: invalid manifest JSON",
        ));
        let mut e = entries();
        e[0] = RawEntry::stored("manifest.json", &deep);
        cases.push(self.insider_bundle(
            Case::new(
                "deep-nesting-manifest-unsigned",
                Class::DeepNesting,
                "the manifest replaced by 10,000 nested arrays (old signature kept): never parsed",
            ),
            zip(e),
            &format!("signature does not match publisher {ins_id}"),
        ));
        let dup = String::from_utf8(manifest.clone()).unwrap().replacen(
            "  \"name\": \"hostile\",\n",
            "  \"name\": \"hostile\",\n  \"name\": \"official\",\n",
            1,
        );
        let e = signed_metadata(ins, dup.as_bytes());
        cases.push(self.insider_bundle(
            Case::new(
                "duplicate-keys-manifest",
                Class::DuplicateKeys,
                "a signed manifest with \"name\" twice",
            ),
            zip(e),
            "duplicate field `name`",
        ));
    }

    // ---- authentic or tampered bundles served under the hash the signed index gives ----

    /// `bytes` served at the good gamma's address; push PUTs them there (or, `own`, at their
    /// own hash into `into`'s folder, refused with `push_reason`).
    fn served_bundle(
        &self,
        mut case: Case,
        bytes: Vec<u8>,
        push: PushCase,
        verify: Option<VerifyCase>,
    ) -> Case {
        let publisher = Paths::of(self.publisher.public());
        let reason = self.substituted(&bytes, &self.gamma);
        case.verify = verify;
        case.push = Some(push);
        case.net = Some(NetCase {
            scene: Scene::files(&self.good).with(
                &publisher.bundle(&self.gamma.sha256),
                Reply::ok("application/zip", bytes),
            ),
            reader_publisher: Who::Publisher,
            fetch: Some("gamma".into()),
            sync: Some(SyncExpect {
                reason: reason.clone(),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: Some(Fate::Lying),
                error: Some(ErrorClass::Verification),
                warning: false,
                reason,
            }),
        });
        case
    }

    fn served_bundle_cases(&self, cases: &mut Vec<Case>) {
        let publisher = Paths::of(self.publisher.public());
        let insider = Paths::of(self.insider.public());
        let hash_mismatch = |path: String, body: &[u8]| PushCase {
            request: PushRequest::Put {
                path,
                body: body.to_vec(),
                headers: Vec::new(),
            },
            status: 422,
            reason: "sha256 mismatch".into(),
        };

        let mut tampered = self.gamma.bytes.clone();
        let at = find(&tampered, &self.gamma.noise[..64]) + 100;
        tampered[at] ^= 0x01;
        cases.push(self.served_bundle(
            Case::new(
                "tamper-served-bundle",
                Class::Tampering,
                "the real gamma bundle with one \
                byte of its photo flipped, at the real bundle's address",
            ),
            tampered.clone(),
            hash_mismatch(publisher.bundle(&self.gamma.sha256), &tampered),
            Some(VerifyCase {
                bytes: tampered.clone(),
                publisher: Who::Publisher,
                reason: "entry files/images/photo.bin: crc32 mismatch".into(),
            }),
        ));
        cases.push(self.served_bundle(
            Case::new(
                "mix-bundle-other-article",
                Class::MixAndMatch,
                "the authentic alpha v1 bundle served under gamma v1's hash",
            ),
            self.alpha.bytes.clone(),
            hash_mismatch(publisher.bundle(&self.gamma.sha256), &self.alpha.bytes),
            None,
        ));
        cases.push(self.served_bundle(
            Case::new(
                "mix-bundle-other-publisher",
                Class::MixAndMatch,
                "the forger's authentic gamma v1 served under the publisher's gamma v1 hash",
            ),
            self.forged_gamma.bytes.clone(),
            PushCase {
                request: PushRequest::Put {
                    path: publisher.bundle(&self.forged_gamma.sha256),
                    body: self.forged_gamma.bytes.clone(),
                    headers: Vec::new(),
                },
                status: 422,
                reason: format!(
                    "signature does not match publisher {}",
                    self.publisher.public().id()
                ),
            },
            Some(VerifyCase {
                bytes: self.forged_gamma.bytes.clone(),
                publisher: Who::Publisher,
                reason: format!(
                    "signature does not match publisher {}",
                    self.publisher.public().id()
                ),
            }),
        ));

        // Listed by a trusted index under another name or publisher: only the hash matches.
        let mut case = Case::new(
            "mix-listed-other-article",
            Class::MixAndMatch,
            "the insider's index lists hostile v1 with the insider's authentic epsilon v1 bundle",
        );
        case.net = Some(NetCase {
            scene: Scene::files(&self.insider_listing(
                "mix-listed-other-article",
                "hostile",
                1,
                &self.epsilon.bytes,
            )),
            reader_publisher: Who::Insider,
            fetch: Some("hostile".into()),
            sync: Some(SyncExpect {
                reason: "holds epsilon v1, but the index lists it as hostile v1".into(),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: None,
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: "holds epsilon v1, but the index lists it as hostile v1".into(),
            }),
        });
        cases.push(case);
        let reason = format!(
            "signature does not match publisher {}",
            self.insider.public().id()
        );
        let mut case = Case::new(
            "mix-listed-other-publisher",
            Class::MixAndMatch,
            "the insider's index lists hostile v1 with the publisher's authentic alpha v1 bundle",
        );
        case.push = Some(PushCase {
            request: PushRequest::Put {
                path: insider.bundle(&self.alpha.sha256),
                body: self.alpha.bytes.clone(),
                headers: Vec::new(),
            },
            status: 422,
            reason: reason.clone(),
        });
        case.net = Some(NetCase {
            scene: Scene::files(&self.insider_listing(
                "mix-listed-other-publisher",
                "hostile",
                1,
                &self.alpha.bytes,
            )),
            reader_publisher: Who::Insider,
            fetch: Some("hostile".into()),
            sync: Some(SyncExpect {
                reason: reason.clone(),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: None,
                error: Some(ErrorClass::Verification),
                warning: false,
                reason,
            }),
        });
        cases.push(case);
    }

    // ---- index.json ----

    /// An `index.json` served (and pushed) in place of the publisher's.
    fn index_case(
        &self,
        mut case: Case,
        envelope: Vec<u8>,
        root: &Path,
        push: (u16, &str),
        sync: &str,
        reader: ReaderExpect,
    ) -> Case {
        let publisher = Paths::of(self.publisher.public());
        case.push = Some(PushCase {
            request: PushRequest::Put {
                path: publisher.index(),
                body: envelope.clone(),
                headers: Vec::new(),
            },
            status: push.0,
            reason: push.1.to_owned(),
        });
        case.net = Some(NetCase {
            scene: Scene::files(root)
                .with(&publisher.index(), Reply::ok("application/json", envelope)),
            reader_publisher: Who::Publisher,
            fetch: None,
            sync: Some(SyncExpect {
                reason: sync.to_owned(),
                class: ErrorClass::Verification,
            }),
            reader: Some(reader),
        });
        case
    }

    fn index_cases(&self, cases: &mut Vec<Case>) {
        let k = self.publisher.public().id();
        let good = self.index_of(&self.good, &self.publisher);
        let (head, _) = open_envelope(&good);
        let lying = |reason: &str| ReaderExpect {
            fate: Some(Fate::Lying),
            error: Some(ErrorClass::Verification),
            warning: false,
            reason: reason.to_owned(),
        };
        let bad_sig = format!("index signature does not verify with publisher {k}");
        let head_b64_len = B64.encode(&head).len();

        cases.push(self.index_case(
            Case::new(
                "index-tamper-head",
                Class::Tampering,
                "one base64 character of the signed head changed",
            ),
            flip_base64(&good, "head", head_b64_len / 2),
            &self.good,
            (422, &bad_sig),
            &bad_sig,
            lying(&bad_sig),
        ));
        cases.push(self.index_case(
            Case::new(
                "index-tamper-signature",
                Class::Tampering,
                "one base64 character of the head's signature changed",
            ),
            flip_base64(&good, "signature", 20),
            &self.good,
            (422, &bad_sig),
            &bad_sig,
            lying(&bad_sig),
        ));
        let foreign = self.index_of(&self.forger_repo, &self.forger);
        let wrong = format!(
            "index is signed for publisher {}, not the trusted publisher {k}",
            self.forger.public().id()
        );
        cases.push(self.index_case(
            Case::new(
                "index-foreign-key",
                Class::ForeignKey,
                "the forger's own authentic index served as the publisher's",
            ),
            foreign,
            &self.good,
            (422, &wrong),
            &wrong,
            lying(&wrong),
        ));
        let forged = envelope(&head, &self.forger.sign(Domain::IndexHead, &head));
        cases.push(self.index_case(
            Case::new(
                "index-forged-claims-trusted",
                Class::ForeignKey,
                "the publisher's real head bytes, signed by the forger",
            ),
            forged,
            &self.good,
            (422, &bad_sig),
            &bad_sig,
            lying(&bad_sig),
        ));
        let cross = envelope(&head, &self.publisher.sign(Domain::BundleManifest, &head));
        cases.push(self.index_case(
            Case::new(
                "cross-domain-signature-index",
                Class::ForeignKey,
                "the real head signed by the publisher's key in the bundle-manifest domain",
            ),
            cross,
            &self.good,
            (422, &bad_sig),
            &bad_sig,
            lying(&bad_sig),
        ));

        cases.push(self.index_case(
            Case::new(
                "index-rollback",
                Class::Rollback,
                "the publisher's authentic sequence 1, to holders of sequence 2",
            ),
            self.index_of(&self.seq1, &self.publisher),
            &self.seq1,
            (
                409,
                "older index: offered sequence 1, the store holds sequence 2",
            ),
            "older index: it serves sequence 1, this mirror holds 2",
            ReaderExpect {
                fate: Some(Fate::Stale),
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: "sequence 1 is older than sequence 2".into(),
            },
        ));
        cases.push(self.index_case(
            Case::new(
                "index-freeze-expired",
                Class::Freeze,
                "an authentic sequence 3 that expired a day ago, to holders of a fresh sequence 2",
            ),
            self.index_of(&self.frozen, &self.publisher),
            &self.frozen,
            (
                409,
                "stale index: offered sequence 3 has expired and the held one is fresher",
            ),
            "expired index: sequence 3 has expired and the held index is still fresh",
            ReaderExpect {
                fate: Some(Fate::Ok),
                error: None,
                warning: true,
                // The mirror's note says "offered sequence 3, which has expired", the warning
                // "a mirror offered index sequence 3, which has expired; keeping the fresher ...".
                reason: "sequence 3, which has expired".into(),
            },
        ));
        cases.push(self.index_case(
            Case::new(
                "index-other-history",
                Class::MixAndMatch,
                "an authentic sequence 3 of \
                another history (forked after sequence 1: a stolen key)",
            ),
            self.index_of(&self.fork, &self.publisher),
            &self.fork,
            (
                409,
                &format!(
                    "publisher {k} signed two conflicting indexes (index 3 does not chain \
                to the index 2 held)"
                ),
            ),
            "EQUIVOCATION",
            ReaderExpect {
                fate: None,
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: format!(
                    "EQUIVOCATION: publisher {k} signed two conflicting indexes \
                    (index 3 does not chain to the index 2 held)"
                ),
            },
        ));

        // The same signed document spelled differently: anyone can make one, without a key.
        let respaced = |envelope: Vec<u8>| [b"{ ".as_slice(), &envelope[1..]].concat();
        let canonical = "not in its one canonical encoding";
        cases.push(self.index_case(
            Case::new(
                "index-respaced-held",
                Class::Respelled,
                "the held sequence 2 with one added space (once a false EQUIVOCATION)",
            ),
            respaced(self.index_of(&self.seq2, &self.publisher)),
            &self.good,
            (422, canonical),
            canonical,
            lying(canonical),
        ));
        cases.push(self.index_case(
            Case::new(
                "index-respaced-next",
                Class::Respelled,
                "the real next sequence 3 with one added space (once jammed the real one)",
            ),
            respaced(good.clone()),
            &self.good,
            (422, canonical),
            canonical,
            lying(canonical),
        ));

        let malformed = "index envelope is malformed";
        let mut huge = good.clone();
        let close = huge.len() - 2;
        huge.splice(close..close, std::iter::repeat_n(b' ', 100 << 10));
        cases.push(self.index_case(
            Case::new(
                "index-huge-json",
                Class::HugeJson,
                "the real index.json padded with 100 \
                KiB of whitespace (valid JSON, over the 64 KiB cap)",
            ),
            huge.clone(),
            &self.good,
            (
                413,
                &format!(
                    "{} bytes is more than this mirror accepts for this object \
                (65536)",
                    huge.len()
                ),
            ),
            "more than the 65536 bytes",
            lying("sent more than the 65536-byte limit"),
        ));
        let deep = [b"[".repeat(10_000), b"]".repeat(10_000), b"\n".to_vec()].concat();
        cases.push(self.index_case(
            Case::new(
                "index-deep-nesting",
                Class::DeepNesting,
                "index.json of 10,000 nested arrays",
            ),
            deep,
            &self.good,
            (422, malformed),
            malformed,
            lying(malformed),
        ));
        let text = String::from_utf8(good.clone()).unwrap();
        let dup = text.replacen(
            "{\"format\":\"qasid-index-envelope/1\",",
            "{\"format\":\"qasid-index-envelope/1\",\"format\":\"qasid-index-envelope/1\",",
            1,
        );
        let dup_reason = "duplicate field `format`";
        cases.push(self.index_case(
            Case::new(
                "index-duplicate-keys",
                Class::DuplicateKeys,
                "the real index.json with \"format\" twice",
            ),
            dup.into_bytes(),
            &self.good,
            (422, dup_reason),
            dup_reason,
            lying(dup_reason),
        ));
        let old = self.index_of(&self.seq1, &self.publisher);
        let (old_head, _) = open_envelope(&old);
        let differential = text.replacen(
            "\"head\":",
            &format!("\"head\":\"{}\",\"head\":", B64.encode(&old_head)),
            1,
        );
        let head_reason = "duplicate field `head`";
        cases.push(self.index_case(
            Case::new(
                "index-duplicate-head-key",
                Class::DuplicateKeys,
                "two \"head\" members, \
                sequence 1's then the real one (first-wins and last-wins parsers disagree)",
            ),
            differential.into_bytes(),
            &self.good,
            (422, head_reason),
            head_reason,
            lying(head_reason),
        ));
        let utf8 = text.replacen("qasid-index-envelope/1", "qasid-index-envelope/1\u{1}", 1);
        let mut utf8 = utf8.into_bytes();
        let at = find(&utf8, b"\x01");
        utf8[at] = 0xff;
        cases.push(self.index_case(
            Case::new(
                "utf8-index-envelope",
                Class::MalformedUtf8,
                "the real index.json with the byte ff inside its format string",
            ),
            utf8,
            &self.good,
            (422, malformed),
            malformed,
            lying(malformed),
        ));
    }

    // ---- index pieces ----

    fn piece_cases(&self, cases: &mut Vec<Case>) {
        let publisher = Paths::of(self.publisher.public());
        let batch = self.good_batch();
        let new_pieces = self.new_pieces();
        // Every new piece of sequence 3 answered with `bytes`.
        let scene = |bytes: &[u8]| {
            new_pieces.iter().fold(Scene::files(&self.good), |s, p| {
                s.with(
                    &publisher.piece(&p.sha256),
                    Reply::ok("application/json", bytes.to_vec()),
                )
            })
        };
        // What sync and the reader say about bytes served where `batch` was promised.
        let expectations = |bytes: &[u8]| {
            let size = batch.size;
            let (sync, reader) = match (bytes.len() as u64).cmp(&size) {
                std::cmp::Ordering::Greater => (
                    format!("more than the {size} bytes the index allows"),
                    format!("sent more than the {size}-byte limit"),
                ),
                std::cmp::Ordering::Less => (
                    format!("of the {size} bytes the index gives"),
                    format!("of the {size} bytes the index gives"),
                ),
                std::cmp::Ordering::Equal => ("sha256 mismatch".into(), "sha256 mismatch".into()),
            };
            (sync, reader)
        };
        let real = self.piece_bytes(&self.good, &self.publisher, &batch.sha256);
        let put_at_batch = |body: &[u8]| PushCase {
            request: PushRequest::Put {
                path: publisher.piece(&batch.sha256),
                body: body.to_vec(),
                headers: Vec::new(),
            },
            status: 422,
            reason: "sha256 mismatch".into(),
        };
        let piece_case =
            |name: &str, class: Class, attack: &str, bytes: Vec<u8>, push: PushCase| {
                let (sync, reader) = expectations(&bytes);
                let mut case = Case::new(name, class, attack);
                case.push = Some(push);
                case.net = Some(NetCase {
                    scene: scene(&bytes),
                    reader_publisher: Who::Publisher,
                    fetch: None,
                    sync: Some(SyncExpect {
                        reason: sync,
                        class: ErrorClass::Verification,
                    }),
                    reader: Some(ReaderExpect {
                        fate: Some(Fate::Lying),
                        error: Some(ErrorClass::Verification),
                        warning: false,
                        reason: reader,
                    }),
                });
                case
            };

        let mut tampered = real.clone();
        let at = find(&tampered, b"\"gamma\"") + 1;
        tampered[at] = b'G';
        cases.push(piece_case(
            "piece-tampered",
            Class::Tampering,
            "the real batch piece with gamma renamed Gamma (same size)",
            tampered.clone(),
            put_at_batch(&tampered),
        ));
        let forger_batch = {
            let head = SignedHead::verify(
                &self.index_of(&self.forger_repo, &self.forger),
                self.forger.public(),
                &IndexLimits::default(),
            )
            .unwrap();
            self.piece_bytes(
                &self.forger_repo,
                &self.forger,
                &head.head().log().batch().sha256,
            )
        };
        cases.push(piece_case(
            "piece-other-publisher",
            Class::MixAndMatch,
            "the forger's authentic piece served under the publisher's batch piece hash",
            forger_batch.clone(),
            PushCase {
                request: PushRequest::Put {
                    path: publisher.piece(&ContentId::of_bytes(&forger_batch)),
                    body: forger_batch.clone(),
                    headers: Vec::new(),
                },
                status: 422,
                reason: format!("not the trusted publisher {}", self.publisher.public().id()),
            },
        ));
        let fork_piece = {
            let head = SignedHead::verify(
                &self.index_of(&self.fork, &self.publisher),
                self.publisher.public(),
                &IndexLimits::default(),
            )
            .unwrap();
            let p = head.head().log().pieces()[0];
            assert!(!new_pieces.contains(&p) && p != batch);
            self.piece_bytes(&self.fork, &self.publisher, &p.sha256)
        };
        cases.push(piece_case(
            "piece-other-history",
            Class::MixAndMatch,
            "an authentic piece of the forked history served under the batch piece hash",
            fork_piece.clone(),
            put_at_batch(&fork_piece),
        ));

        // A piece the insider's signed head lists, so only its content is wrong.
        let deep = [b"[".repeat(10_000), b"]".repeat(10_000)].concat();
        let reference = PieceRef {
            sha256: ContentId::of_bytes(&deep),
            size: deep.len() as u64,
            first: 0,
            count: 1,
        };
        let root = self.insider_repo("deep-nesting-piece", &[(deep.clone(), reference)]);
        let insider = Paths::of(self.insider.public());
        let malformed = "index piece is malformed";
        let mut case = Case::new(
            "deep-nesting-piece",
            Class::DeepNesting,
            "a piece of 10,000 nested arrays (pushed under its own hash; listed by the insider's \
                signed head)",
        );
        case.push = Some(PushCase {
            request: PushRequest::Put {
                path: insider.piece(&reference.sha256),
                body: deep,
                headers: Vec::new(),
            },
            status: 422,
            reason: malformed.into(),
        });
        case.net = Some(NetCase {
            scene: Scene::files(&root),
            reader_publisher: Who::Insider,
            fetch: None,
            sync: Some(SyncExpect {
                reason: malformed.into(),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: Some(Fate::Failed),
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: malformed.into(),
            }),
        });
        cases.push(case);

        let mut case = Case::new(
            "http-endless-piece",
            Class::EndlessData,
            "the batch piece answered with an endless body (no Content-Length)",
        );
        case.net = Some(NetCase {
            scene: new_pieces.iter().fold(Scene::files(&self.good), |s, p| {
                s.with(&publisher.piece(&p.sha256), Reply::Endless)
            }),
            reader_publisher: Who::Publisher,
            fetch: None,
            sync: Some(SyncExpect {
                reason: format!("more than the {} bytes the index allows", batch.size),
                class: ErrorClass::Verification,
            }),
            reader: Some(ReaderExpect {
                fate: Some(Fate::Lying),
                error: Some(ErrorClass::Verification),
                warning: false,
                reason: format!("sent more than the {}-byte limit", batch.size),
            }),
        });
        cases.push(case);
    }

    // ---- HTTP responses ----

    /// `reply` for `path` on an otherwise honest mirror of sequence 3; with `fetch`, the reader
    /// then fetches gamma.
    fn http_case(
        &self,
        mut case: Case,
        path: String,
        reply: Reply,
        fetch: bool,
        sync: SyncExpect,
        reader: ReaderExpect,
    ) -> Case {
        case.net = Some(NetCase {
            scene: Scene::files(&self.good).with(&path, reply),
            reader_publisher: Who::Publisher,
            fetch: fetch.then(|| "gamma".to_owned()),
            sync: Some(sync),
            reader: Some(reader),
        });
        case
    }

    fn http_cases(&self, cases: &mut Vec<Case>) {
        let publisher = Paths::of(self.publisher.public());
        let index = publisher.index();
        let gamma = publisher.bundle(&self.gamma.sha256);
        let good_index = self.index_of(&self.good, &self.publisher);
        let size = self.gamma.size;
        let verification = |reason: &str| SyncExpect {
            reason: reason.to_owned(),
            class: ErrorClass::Verification,
        };
        let runtime = |reason: &str| SyncExpect {
            reason: reason.to_owned(),
            class: ErrorClass::Runtime,
        };
        let reader = |fate: Fate, class: ErrorClass, reason: &str| ReaderExpect {
            fate: Some(fate),
            error: Some(class),
            warning: false,
            reason: reason.to_owned(),
        };
        let block_page = b"<!DOCTYPE html>\n<html><head><title>Blocked</title></head><body>\
            <h1>This site is blocked by order of the Authority</h1></body></html>\n"
            .to_vec();
        let malformed = "index envelope is malformed";

        cases.push(self.http_case(
            Case::new(
                "http-html-200-index",
                Class::ContentType,
                "a censor's HTML block page with status 200 and text/html for index.json",
            ),
            index.clone(),
            Reply::ok("text/html; charset=utf-8", block_page.clone()),
            false,
            runtime("not a qasid mirror"),
            reader(Fate::Failed, ErrorClass::Runtime, "not a qasid mirror"),
        ));
        let short = format!("of the {size} bytes the index gives");
        cases.push(self.http_case(
            Case::new(
                "http-html-200-bundle",
                Class::ContentType,
                "the HTML block page with status 200 for the bundle",
            ),
            gamma.clone(),
            Reply::ok("text/html; charset=utf-8", block_page.clone()),
            true,
            verification(&short),
            reader(Fate::Lying, ErrorClass::Verification, &short),
        ));
        let mut sized = block_page.clone();
        sized.resize(size as usize, b' ');
        cases.push(self.http_case(
            Case::new(
                "http-html-bundle-sized",
                Class::ContentType,
                "text/html for the zip: a block page padded to exactly the bundle's signed size",
            ),
            gamma.clone(),
            Reply::ok("text/html", sized),
            true,
            verification("sha256 mismatch"),
            reader(Fate::Lying, ErrorClass::Verification, "sha256 mismatch"),
        ));
        cases.push(self.http_case(
            Case::new(
                "http-gzip-index-as-identity",
                Class::ContentType,
                "index.json gzip-compressed but sent with Content-Encoding: identity",
            ),
            index.clone(),
            Reply::Bytes {
                status: 200,
                headers: vec![
                    ("Content-Type", "application/json".into()),
                    ("Content-Encoding", "identity".into()),
                ],
                body: gzip(&good_index),
            },
            false,
            verification(malformed),
            reader(Fate::Lying, ErrorClass::Verification, malformed),
        ));
        let gz = gzip(&self.gamma.bytes);
        let gz_reason = self.substituted(&gz, &self.gamma);
        cases.push(self.http_case(
            Case::new(
                "http-gzip-bundle-as-identity",
                Class::ContentType,
                "the bundle gzip-compressed but sent as identity",
            ),
            gamma.clone(),
            Reply::Bytes {
                status: 200,
                headers: vec![("Content-Type", "application/zip".into())],
                body: gz,
            },
            true,
            verification(&gz_reason),
            reader(Fate::Lying, ErrorClass::Verification, &gz_reason),
        ));

        cases.push(self.http_case(
            Case::new(
                "http-endless-index",
                Class::EndlessData,
                "index.json answered with an endless body (no Content-Length)",
            ),
            index.clone(),
            Reply::Endless,
            false,
            verification("more than the 65536 bytes"),
            reader(
                Fate::Lying,
                ErrorClass::Verification,
                "sent more than the 65536-byte limit",
            ),
        ));
        cases.push(self.http_case(
            Case::new(
                "http-endless-bundle",
                Class::EndlessData,
                "the bundle answered with an endless body (no Content-Length)",
            ),
            gamma.clone(),
            Reply::Endless,
            true,
            verification(&format!("more than the {size} bytes the index allows")),
            reader(
                Fate::Lying,
                ErrorClass::Verification,
                &format!("sent more than the {size} bytes the index gives"),
            ),
        ));
        cases.push(self.http_case(
            Case::new(
                "http-length-lie-bundle",
                Class::EndlessData,
                "the bundle announced with Content-Length: 1 TiB",
            ),
            gamma.clone(),
            Reply::LengthLie {
                announced: 1 << 40,
                body: self.gamma.bytes.clone(),
            },
            true,
            verification(&format!("more than the {size} bytes the index allows")),
            reader(
                Fate::Lying,
                ErrorClass::Verification,
                &format!("sent more than the {size} bytes the index gives"),
            ),
        ));

        let redirect = "refused a redirect to another host";
        for (name, path, fetch, what) in [
            ("http-redirect-index", index.clone(), false, "index.json"),
            ("http-redirect-bundle", gamma.clone(), true, "the bundle"),
        ] {
            let mut case = Case::new(
                name,
                Class::Redirect,
                &format!("302 for {what} to the same path on another host (another loopback port)"),
            );
            case.net = Some(NetCase {
                // The target is filled in by the tests: the URL of their "other host".
                scene: Scene::files(&self.good).with(
                    &path,
                    Reply::Redirect(format!("{{OTHER_HOST}}{}", &path[1..])),
                ),
                reader_publisher: Who::Publisher,
                fetch: fetch.then(|| "gamma".to_owned()),
                sync: Some(SyncExpect {
                    reason: redirect.into(),
                    class: ErrorClass::Runtime,
                }),
                reader: Some(reader(Fate::Failed, ErrorClass::Runtime, redirect)),
            });
            cases.push(case);
        }

        let every = Duration::from_millis(300);
        cases.push(self.http_case(
            Case::new(
                "http-slow-loris-index",
                Class::SlowLoris,
                "index.json sent one byte every 300 ms (each read well within the read timeout)",
            ),
            index,
            Reply::Drip {
                body: good_index,
                every,
            },
            false,
            runtime("no complete answer within"),
            reader(
                Fate::TimedOut,
                ErrorClass::Runtime,
                "no complete answer within",
            ),
        ));
        cases.push(self.http_case(
            Case::new(
                "http-slow-loris-bundle",
                Class::SlowLoris,
                "the bundle sent one byte every 300 ms",
            ),
            gamma,
            Reply::Drip {
                body: self.gamma.bytes.clone(),
                every,
            },
            true,
            runtime("no complete answer within"),
            reader(
                Fate::TimedOut,
                ErrorClass::Runtime,
                "no complete answer within",
            ),
        ));
    }

    // ---- requests to the push endpoint ----

    fn push_request_cases(&self, cases: &mut Vec<Case>) {
        let publisher = Paths::of(self.publisher.public());
        let forger = Paths::of(self.forger.public());
        let gamma = publisher.bundle(&self.gamma.sha256);
        let mut push = |name: &str,
                        class: Class,
                        attack: &str,
                        request: PushRequest,
                        status: u16,
                        reason: &str| {
            let mut case = Case::new(name, class, attack);
            case.push = Some(PushCase {
                request,
                status,
                reason: reason.to_owned(),
            });
            cases.push(case);
        };
        push(
            "push-untrusted-publisher",
            Class::ForeignKey,
            "the forger pushes its own authentic bundle into its own folder",
            PushRequest::Put {
                path: forger.bundle(&self.forged_gamma.sha256),
                body: self.forged_gamma.bytes.clone(),
                headers: Vec::new(),
            },
            403,
            &format!(
                "this mirror does not carry publisher {}",
                self.forger.public().id()
            ),
        );
        push(
            "push-url-traversal",
            Class::ZipSlip,
            "a PUT to .../bundles/..%2f..%2f..%2fstate.zip (percent-encoded traversal)",
            PushRequest::Put {
                path: format!("{}/bundles/..%2f..%2f..%2fstate.zip", publisher.dir()),
                body: self.gamma.bytes.clone(),
                headers: Vec::new(),
            },
            404,
            "not found",
        );
        push(
            "push-gzip-body",
            Class::ContentType,
            "the real gamma bundle gzip-compressed with Content-Encoding: gzip",
            PushRequest::Put {
                path: gamma.clone(),
                body: gzip(&self.gamma.bytes),
                headers: vec![("Content-Encoding", "gzip".into())],
            },
            422,
            "sha256 mismatch",
        );
        push(
            "push-endless-body",
            Class::EndlessData,
            "a chunked PUT without Content-Length",
            PushRequest::Raw(
                format!(
                    "PUT {gamma} HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nConnection: \
                    close\r\n\r\n10000\r\n{}\r\n",
                    "x".repeat(0x10000)
                )
                .into_bytes(),
            ),
            411,
            "send the object with a Content-Length header",
        );
        push(
            "push-length-lie",
            Class::EndlessData,
            "a PUT announcing the bundle's size but sending 100 bytes, then half-closing",
            PushRequest::Raw(
                [
                    format!(
                        "PUT {gamma} HTTP/1.1\r\nHost: m\r\nContent-Length: {}\r\nConnection: \
                    close\r\n\r\n",
                        self.gamma.size
                    )
                    .into_bytes(),
                    self.gamma.bytes[..100].to_vec(),
                ]
                .concat(),
            ),
            400,
            "the request body did not match its Content-Length",
        );
        push(
            "push-slow-loris-headers",
            Class::SlowLoris,
            "a request whose headers arrive one byte a second",
            PushRequest::SlowHeaders,
            0,
            "",
        );
    }
}

/// The decompressed content of a raw entry.
fn content(entry: &RawEntry) -> Vec<u8> {
    crate::bundle_support::content_of(
        std::slice::from_ref(entry),
        std::str::from_utf8(&entry.name).unwrap(),
    )
}

/// A complete, valid raw bundle of `files` (sorted) signed by `signer`, its manifest naming it.
fn raw_bundle(signer: &SecretKey, files: &[(&'static str, Vec<u8>)]) -> Vec<RawEntry> {
    let files = borrowed(files);
    let mut entries = signed_metadata(signer, &manifest_json(signer.public(), &files));
    entries.extend(
        files
            .iter()
            .map(|(path, content)| file_entry(path, content)),
    );
    entries
}
