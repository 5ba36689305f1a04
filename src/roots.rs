//! A publisher's root of trust: threshold-signed root documents, the signing keys they
//! delegate, and the chain of root versions every verifier walks (docs/PROTOCOL.md §11).
//!
//! Owns the root document's one canonical encoding (anything else is refused), the publisher
//! id derived from the first root, TUF's rule for a new root version (a threshold of the
//! previous root's keys and a threshold of its own), rollback and equivocation refusal, and the
//! [`Authority`] that head, bundle and note verification take: the keys the current root
//! delegates for each role, unexpired. A bare key is the implicit one-key root, so a publisher
//! without roots works exactly as before. This module never does network I/O (callers fetch
//! `roots/<N>.json` and offer the bytes) and never prints.
//!
//! Submodules: `wire` (the canonical JSON form and its parser), `chain` (the held chain of
//! roots, stored one file per version, and the evidence of equivocation).

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::content_id::ContentId;
use crate::keys::{KeyError, KeyId, PublicKey, Role, SecretKey, Trusted};
use crate::ErrorClass;

mod chain;
mod id;
mod wire;

pub use chain::{Chain, ChainStorage, Offered};
pub use id::derive_publisher_id;
pub use wire::ROOT_FORMAT;

/// A signing key a root delegates: what it may sign, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub key: PublicKey,
    /// Non-empty, no duplicates; kept in the canonical order of [`Role::ALL`].
    pub roles: Vec<Role>,
    /// After this time the key signs nothing valid (whole seconds, UTC).
    pub expires: SystemTime,
}

/// The signed part of a root document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootBody {
    /// 1 for the first root, then each new root is the previous one's version + 1.
    pub version: u64,
    /// The sha256 of the previous root's payload (its [`Root::id`]); `None` exactly for root 1.
    /// It ties each root to one history: a root made on a fork does not chain onto the other
    /// branch even when both have the same root keys, so the fork is found and kept as evidence.
    pub previous: Option<ContentId>,
    /// How many of `root_keys` must sign this root and the next one.
    pub threshold: u64,
    /// The offline keys that sign roots, sorted by their raw bytes, no duplicates.
    pub root_keys: Vec<PublicKey>,
    /// The online keys, sorted by their raw bytes, no duplicates.
    pub signing_keys: Vec<Delegation>,
}

/// A root document: its body, the exact signed bytes, and the signatures it carries (sorted by
/// key, one per key). Only the parser and [`Root::unsigned`] make one, so the body is valid
/// and `payload` is its canonical encoding; signatures are checked against a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    body: RootBody,
    payload: Vec<u8>,
    signatures: Vec<(PublicKey, [u8; 64])>,
}

/// Why a root document or a chain of roots was refused.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("root document is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("malformed root document: {0}")]
    Malformed(String),
    /// The bytes parse but are not the one canonical encoding (spacing, member order, key
    /// order, a trailing byte): refused so every root has exactly one form.
    #[error("root document is not in its canonical encoding (compact JSON, fixed order, one trailing newline)")]
    NonCanonical,
    #[error("root document format {found:?} is not {expected:?}")]
    UnknownFormat {
        found: String,
        expected: &'static str,
    },
    #[error("root {version}: signature by key {key} does not verify")]
    BadSignature { version: u64, key: KeyId },
    /// A signature by a key that is a root key of neither this root nor the previous one.
    #[error("root {version}: signed by key {key}, which is not one of its or the previous root's root keys")]
    StraySignature { version: u64, key: KeyId },
    #[error("root {version}: {found} valid signatures of {what} root keys, {needed} needed")]
    BelowThreshold {
        version: u64,
        what: &'static str,
        found: u64,
        needed: u64,
    },
    /// Root 1 does not derive the publisher id the verifier trusts.
    #[error("root 1 belongs to publisher {found}, not to the trusted publisher {expected}")]
    WrongPublisher { expected: KeyId, found: KeyId },
    /// The root names another root as its previous one: it was made on a fork of the history.
    #[error("root {version} follows a root with sha256 {named}, not the held root {held}")]
    WrongPrevious {
        version: u64,
        named: String,
        held: String,
    },
    /// A root's version is not the held version + 1.
    #[error("root version {offered} does not follow the held root {held} (expected {})", held + 1)]
    WrongVersion { held: u64, offered: u64 },
    /// A root older than the one held, with different content: never accepted.
    #[error(
        "root {offered} is older than the held root {held} and differs from it: refused (rollback)"
    )]
    Rollback { held: u64, offered: u64 },
    /// Two different roots with the same version, both validly signed: the root keys (a
    /// threshold of them) signed two histories. Evidence was kept.
    #[error(
        "EQUIVOCATION: two different validly signed roots with version {version} (a threshold \
         of root keys signed both); evidence saved in {}",
        evidence.as_ref().map_or("<not saved>".to_owned(), |p| p.display().to_string())
    )]
    Equivocation {
        version: u64,
        evidence: Option<PathBuf>,
    },
    /// Held roots on disk that no longer verify.
    #[error("stored root {} does not verify (damaged state?)", path.display())]
    StateCorrupt {
        path: PathBuf,
        #[source]
        source: Box<RootError>,
    },
    #[error("more than {limit} root versions: refused")]
    TooMany { limit: u64 },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RootError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RootError::Io { .. } => ErrorClass::Runtime,
            RootError::Usage(_) => ErrorClass::Usage,
            RootError::Key(e) => e.class(),
            _ => ErrorClass::Verification,
        }
    }

    /// The error's name in the shared vectors (`tests/vectors/root-v1/expect.json`) and the
    /// browser reader: one word per way a root is refused.
    pub fn kind(&self) -> &'static str {
        match self {
            RootError::TooLarge { .. } => "too_large",
            RootError::Malformed(_) => "malformed",
            RootError::NonCanonical => "non_canonical",
            RootError::UnknownFormat { .. } => "unknown_format",
            RootError::BadSignature { .. } => "bad_signature",
            RootError::StraySignature { .. } => "stray_signature",
            RootError::BelowThreshold { .. } => "below_threshold",
            RootError::WrongPublisher { .. } => "wrong_publisher",
            RootError::WrongPrevious { .. } => "wrong_previous",
            RootError::WrongVersion { .. } => "wrong_version",
            RootError::Rollback { .. } => "rollback",
            RootError::Equivocation { .. } => "equivocation",
            RootError::TooMany { .. } => "too_many",
            RootError::StateCorrupt { .. } => "state_corrupt",
            RootError::Usage(_) => "usage",
            RootError::Key(_) => "key",
            RootError::Io { .. } => "io",
        }
    }

    /// The root does not chain onto the held one (signatures): when walking, the source is
    /// asked for the held version again, to tell a forgery from equivocation.
    pub fn breaks_chain(&self) -> bool {
        matches!(
            self,
            RootError::BelowThreshold { .. }
                | RootError::StraySignature { .. }
                | RootError::WrongPrevious { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| RootError::Io { path, source }
    }
}

impl Root {
    /// A root with no signatures yet (`root create`, `root rotate`), validated like a parsed
    /// one.
    pub fn unsigned(body: RootBody) -> Result<Self, RootError> {
        wire::check_body(&body)?;
        let payload = wire::encode_payload(&body);
        Ok(Self {
            body,
            payload,
            signatures: Vec::new(),
        })
    }

    /// Parses a root file, refusing anything that is not its canonical encoding. Signatures
    /// are checked for being valid signatures by the keys they name, not for thresholds (that
    /// needs the chain: [`Root::verify_first`], [`Root::verify_successor`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, RootError> {
        let root = wire::parse(bytes)?;
        for (key, sig) in &root.signatures {
            key.verify(crate::keys::Domain::Root, &root.payload, sig)
                .map_err(|_| RootError::BadSignature {
                    version: root.body.version,
                    key: key.id(),
                })?;
        }
        Ok(root)
    }

    /// The canonical file bytes (compact JSON and one `\n`).
    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode_file(self)
    }

    pub fn body(&self) -> &RootBody {
        &self.body
    }

    pub fn version(&self) -> u64 {
        self.body.version
    }

    /// The exact bytes every signature covers (after the `qasid-root-v1\n` prefix).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// sha256 of the payload: the root's identity. Two files with the same payload are the same
    /// root, whatever signatures each has collected.
    pub fn id(&self) -> ContentId {
        ContentId::of_bytes(&self.payload)
    }

    pub fn signatures(&self) -> &[(PublicKey, [u8; 64])] {
        &self.signatures
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key), keeping the
    /// canonical order.
    pub fn sign(&mut self, key: &SecretKey) {
        let sig = key.sign(crate::keys::Domain::Root, &self.payload);
        self.signatures.retain(|(k, _)| k != key.public());
        self.signatures.push((key.public().clone(), sig));
        self.signatures
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }

    /// The publisher id this root names when it is root 1: for a one-key root (one root key,
    /// threshold 1) that key, so a single-key publisher keeps its id when it adopts a root;
    /// otherwise a key derived from the payload that nobody holds (§11.3).
    pub fn publisher_id(&self) -> PublicKey {
        match (self.body.root_keys.as_slice(), self.body.threshold) {
            ([only], 1) => only.clone(),
            _ => derive_publisher_id(&self.payload),
        }
    }

    /// Checks a first root: version 1, derives `id`, signed by a threshold of its own keys.
    pub fn verify_first(&self, id: &PublicKey) -> Result<(), RootError> {
        if self.body.version != 1 {
            return Err(RootError::WrongVersion {
                held: 0,
                offered: self.body.version,
            });
        }
        let found = self.publisher_id();
        if &found != id {
            return Err(RootError::WrongPublisher {
                expected: id.id(),
                found: found.id(),
            });
        }
        self.check_signers(None)
    }

    /// Checks the root that follows `previous`: version + 1, a threshold of `previous`'s root
    /// keys and a threshold of its own.
    pub fn verify_successor(&self, previous: &Root) -> Result<(), RootError> {
        if self.body.version != previous.body.version + 1 {
            return Err(RootError::WrongVersion {
                held: previous.body.version,
                offered: self.body.version,
            });
        }
        let held = previous.id();
        if self.body.previous.as_ref() != Some(&held) {
            return Err(RootError::WrongPrevious {
                version: self.body.version,
                named: self
                    .body
                    .previous
                    .as_ref()
                    .map_or_else(|| "(none)".to_owned(), ToString::to_string),
                held: held.to_string(),
            });
        }
        self.check_signers(Some(previous))
    }

    fn check_signers(&self, previous: Option<&Root>) -> Result<(), RootError> {
        let version = self.body.version;
        let own = &self.body.root_keys;
        for (key, _) in &self.signatures {
            let known =
                own.contains(key) || previous.is_some_and(|p| p.body.root_keys.contains(key));
            if !known {
                return Err(RootError::StraySignature {
                    version,
                    key: key.id(),
                });
            }
        }
        let count = |keys: &[PublicKey]| {
            self.signatures
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .count() as u64
        };
        if let Some(previous) = previous {
            let found = count(&previous.body.root_keys);
            if found < previous.body.threshold {
                return Err(RootError::BelowThreshold {
                    version,
                    what: "the previous root's",
                    found,
                    needed: previous.body.threshold,
                });
            }
        }
        let found = count(own);
        if found < self.body.threshold {
            return Err(RootError::BelowThreshold {
                version,
                what: "its own",
                found,
                needed: self.body.threshold,
            });
        }
        Ok(())
    }

    /// How many more signatures of this root's own keys (and, when given, of the previous
    /// root's) it needs: for `root show` on a file being signed.
    pub fn missing_signatures(&self, previous: Option<&Root>) -> (u64, u64) {
        let count = |keys: &[PublicKey]| {
            self.signatures
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .count() as u64
        };
        let own = self
            .body
            .threshold
            .saturating_sub(count(&self.body.root_keys));
        let prev = previous.map_or(0, |p| {
            p.body.threshold.saturating_sub(count(&p.body.root_keys))
        });
        (own, prev)
    }
}

/// Whom a verifier trusts right now for one publisher: its id and, per role, the keys the
/// current root delegates that have not expired. Built from a [`Chain`] (or, for a publisher
/// without roots, from its one key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    id: PublicKey,
    /// 0 for the implicit one-key root, else the current root's version.
    version: u64,
    /// Indexed like [`Role::ALL`].
    signers: [Vec<PublicKey>; 3],
}

impl Authority {
    /// The implicit one-key root: `key` is the id and signs for every role.
    pub fn single(key: &PublicKey) -> Self {
        Self {
            id: key.clone(),
            version: 0,
            signers: [vec![key.clone()], vec![key.clone()], vec![key.clone()]],
        }
    }

    /// Copies whatever a verifier was given (a bare key or an authority).
    pub fn of(trusted: &(impl Trusted + ?Sized)) -> Self {
        Self {
            id: trusted.publisher().clone(),
            version: trusted.root_version(),
            signers: Role::ALL.map(|r| trusted.signers(r).to_vec()),
        }
    }

    fn from_root(id: &PublicKey, root: &Root, now: SystemTime) -> Self {
        let signers = Role::ALL.map(|role| {
            root.body
                .signing_keys
                .iter()
                .filter(|d| d.roles.contains(&role) && d.expires > now)
                .map(|d| d.key.clone())
                .collect()
        });
        Self {
            id: id.clone(),
            version: root.body.version,
            signers,
        }
    }

    /// The version of the root this authority comes from (0: no root, the implicit one).
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl Trusted for Authority {
    fn publisher(&self) -> &PublicKey {
        &self.id
    }

    fn signers(&self, role: Role) -> &[PublicKey] {
        let i = Role::ALL
            .iter()
            .position(|r| *r == role)
            .expect("every role is listed");
        &self.signers[i]
    }

    fn root_version(&self) -> u64 {
        self.version
    }
}

/// What a user names to trust a publisher: a key (a one-key publisher, or the bare id of one
/// with roots) or a first root file, whose id it derives.
#[derive(Debug, Clone)]
pub struct Anchor {
    id: PublicKey,
    first: Option<Root>,
}

impl Anchor {
    /// Reads a `--publisher` / `[[publisher]] key` value: a path to a minisign public key file
    /// or to a first root file (`root.json`), else the inline one-line base64 key.
    pub fn from_arg(arg: &str) -> Result<Self, RootError> {
        let path = std::path::Path::new(arg);
        if path.is_file() {
            let bytes = read_capped(path)?;
            if bytes.first() == Some(&b'{') {
                return Self::from_root_bytes(&bytes);
            }
        }
        Ok(Self::key(PublicKey::from_arg(arg)?))
    }

    /// A first root's bytes: parsed, version 1, signed by a threshold of its own keys.
    pub fn from_root_bytes(bytes: &[u8]) -> Result<Self, RootError> {
        let root = Root::parse(bytes)?;
        let id = root.publisher_id();
        root.verify_first(&id)?;
        Ok(Self {
            id,
            first: Some(root),
        })
    }

    pub fn key(id: PublicKey) -> Self {
        Self { id, first: None }
    }

    /// The publisher id.
    pub fn id(&self) -> &PublicKey {
        &self.id
    }

    /// The first root, when the anchor was a root file.
    pub fn first(&self) -> Option<&Root> {
        self.first.as_ref()
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id.id())
    }
}

/// Where a reader (or `index show`, `verify`) keeps a publisher's roots: beside its index
/// state, `<state>/index/<id hex>/roots/`, evidence in `<state>/evidence/`.
pub fn state_storage(state: &std::path::Path, id: &PublicKey) -> ChainStorage {
    let dir = state.join("index").join(id.hex());
    ChainStorage {
        dir: dir.join("roots"),
        tmp: dir,
        evidence: state.join("evidence"),
    }
}

/// Reads a root file (or a key file) from disk, at most [`crate::limits::MAX_ROOT_BYTES`].
pub fn read_capped(path: &std::path::Path) -> Result<Vec<u8>, RootError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(RootError::io(path))?;
    let mut bytes = Vec::new();
    file.take(crate::limits::MAX_ROOT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(RootError::io(path))?;
    if bytes.len() as u64 > crate::limits::MAX_ROOT_BYTES {
        return Err(RootError::TooLarge {
            limit: crate::limits::MAX_ROOT_BYTES,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
