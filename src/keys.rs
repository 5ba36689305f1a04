//! Publisher keys: ed25519 key pairs, minisign-compatible key files, domain-separated signing.
//!
//! Owns the only code that signs or checks a signature. Public keys are read from minisign
//! public key files or their one-line base64 form; every signature qasid makes is over
//! `domain ‖ message`, so a signature made for one purpose (a bundle manifest) can never be
//! replayed as another (an index). Submodules: `secret_file` (the minisign secret key format and
//! its scrypt encryption), `key_files` (the key pair on disk), `passphrase` (the only code that
//! may read the terminal, and only when the CLI asks) and [`minisig`] (detached `.minisig`
//! signatures). This module never touches bundles or the network, and never prints.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ErrorClass;

mod key_files;
pub mod minisig;
mod passphrase;
mod secret_file;

pub use key_files::{key_file_too_open, load_secret_key, write_key_pair, KeyPairPaths};
pub use passphrase::{
    new_key_passphrase, passphrase_from_env_or_prompt, Passphrase, NEW_PASSPHRASE_MIN_CHARS,
    NEW_PASSPHRASE_MIN_DISTINCT,
};

/// Signature algorithm tag of minisign keys and legacy signatures.
const MINISIGN_ED: &[u8; 2] = b"Ed";

/// What a signature is for; prepended to the message before signing (domain separation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A bundle's `manifest.json`.
    BundleManifest,
    /// A publisher's signed index head.
    IndexHead,
    /// A publisher's root document (the threshold root of trust, `crate::roots`).
    Root,
    /// A mirror note (docs/PROTOCOL.md, "Mirror notes").
    Note,
}

impl Domain {
    /// The exact prefix bytes, as documented in docs/FORMAT.md.
    pub fn prefix(self) -> &'static [u8] {
        match self {
            Domain::BundleManifest => b"qasid-bundle-manifest-v1\n",
            Domain::IndexHead => b"qasid-index-head-v1\n",
            Domain::Root => b"qasid-root-v1\n",
            Domain::Note => b"qasid-note-v1\n",
        }
    }
}

/// What a delegated signing key may sign (a publisher's root lists the roles of each key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Bundle manifests (and their detached `.minisig` signatures).
    Bundle,
    /// Index heads (`index.json`).
    Index,
    /// Signed mirror notes.
    Note,
}

impl Role {
    /// Every role, in the canonical (alphabetical) order roots list them.
    pub const ALL: [Role; 3] = [Role::Bundle, Role::Index, Role::Note];

    /// The role's name in root documents and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bundle => "bundle",
            Role::Index => "index",
            Role::Note => "note",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Whom a verifier trusts for one publisher: the publisher's id (its folder name and the
/// `publisher` member of heads and pieces) and the keys that may sign for each role.
///
/// A bare [`PublicKey`] is the implicit one-key root: the id, and the only signer for every
/// role. A publisher with a root of trust is a [`crate::roots::Authority`], built from its
/// verified chain of roots.
pub trait Trusted {
    /// The publisher id.
    fn publisher(&self) -> &PublicKey;
    /// The keys whose signatures count for `role`, right now.
    fn signers(&self, role: Role) -> &[PublicKey];

    /// The version of the publisher root these signers come from; 0 for a bare key.
    fn root_version(&self) -> u64 {
        0
    }

    /// Checks `signature` over `domain ‖ message` against every key allowed for `role` and
    /// returns the one that made it. Fails with the id's [`KeyError::BadSignature`].
    fn verify_as(
        &self,
        role: Role,
        domain: Domain,
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<&PublicKey, KeyError> {
        let signed = [domain.prefix(), message].concat();
        let signature = Signature::from_bytes(signature);
        self.signers(role)
            .iter()
            .find(|key| key.key.verify_strict(&signed, &signature).is_ok())
            .ok_or(KeyError::BadSignature(self.publisher().id()))
    }
}

impl Trusted for PublicKey {
    fn publisher(&self) -> &PublicKey {
        self
    }

    fn signers(&self, _role: Role) -> &[PublicKey] {
        std::slice::from_ref(self)
    }
}

/// Errors reading keys or checking signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a minisign public key: {0}")]
    MalformedPublicKey(&'static str),
    #[error("not a qasid/minisign secret key: {0}")]
    MalformedSecretKey(&'static str),
    /// The secret key file asks scrypt for more than qasid allows (see
    /// `secret_file::KDF_TABLE_CAP`); a hostile or damaged file must not make qasid allocate
    /// or compute without bound.
    #[error(
        "secret key asks for too costly a key derivation (opslimit {opslimit}, memlimit \
         {memlimit}): qasid allows at most 1 GiB of scrypt memory and libsodium's largest \
         opslimit"
    )]
    KdfTooCostly { opslimit: u64, memlimit: u64 },
    /// The checksum inside an encrypted secret key did not match after decryption. Names the
    /// key file (or `<text>`): the key id is itself encrypted, so it is unknown here.
    #[error("wrong passphrase for secret key {0}")]
    WrongPassphrase(String),
    /// The secret key is encrypted and no passphrase was given.
    #[error("secret key {0} is encrypted: set QASID_PASSPHRASE or run on a terminal")]
    PassphraseNeeded(String),
    /// Neither QASID_PASSPHRASE nor a terminal was available to read a passphrase from.
    #[error("cannot ask for a passphrase: set QASID_PASSPHRASE or run on a terminal ({0})")]
    PassphraseUnavailable(#[source] std::io::Error),
    /// A new key's passphrase fails the strength rule (see `Passphrase::check_strength`).
    #[error(
        "passphrase too weak for a new key: use at least {min_chars} characters, at least \
         {min_distinct} of them different (three or four random words work well)"
    )]
    WeakPassphrase {
        min_chars: usize,
        min_distinct: usize,
    },
    /// A new key is to be encrypted but there is neither QASID_PASSPHRASE nor a terminal.
    #[error(
        "no passphrase for the new secret key: set QASID_PASSPHRASE, run on a terminal, or \
         pass --unencrypted for a key unattended jobs can use"
    )]
    NoPassphraseSource,
    /// The two passphrases typed when creating a key differ.
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    /// A passphrase qasid refuses (empty, too long, or with characters minisign cannot read).
    #[error("unusable passphrase: {0}")]
    InvalidPassphrase(&'static str),
    #[error("signature does not match publisher {0}")]
    BadSignature(KeyId),
    /// The trusted comment of a detached signature was altered or signed by another key.
    #[error("trusted comment signature does not match publisher {0}")]
    BadTrustedComment(KeyId),
    /// A detached signature names a different key than the one it is checked against.
    #[error("signature was made by key {found}, not by publisher {expected}")]
    SignatureKeyMismatch { expected: KeyId, found: KeyId },
    /// A `.minisig` file that cannot be parsed.
    #[error("not a minisign signature: {0}")]
    MalformedSignature(&'static str),
    /// A legacy (`Ed`, not prehashed) minisign signature; qasid accepts only prehashed `ED` ones.
    #[error(
        "legacy non-prehashed minisign signature: only prehashed (ED) signatures are accepted"
    )]
    LegacySignature,
    /// Reading the signed data failed while checking a detached signature.
    #[error("reading the signed data: {0}")]
    ReadData(#[source] std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A public key path that does not exist (and is not an inline key either).
    #[error(
        "{0}: no such file (a publisher key is a publisher.pub file or its 56-character \
         base64 line)"
    )]
    NoSuchPublicKeyFile(String),
    /// A public key file was given where the secret key is needed.
    #[error("{path} is a public key, not a secret key: use the secret key file {secret}")]
    PublicKeyGiven { path: String, secret: String },
    #[error("{0} already exists (use --force to overwrite)")]
    AlreadyExists(String),
}

impl KeyError {
    pub fn class(&self) -> ErrorClass {
        match self {
            KeyError::BadSignature(_)
            | KeyError::BadTrustedComment(_)
            | KeyError::SignatureKeyMismatch { .. }
            | KeyError::MalformedSignature(_)
            | KeyError::LegacySignature => ErrorClass::Verification,
            KeyError::Io { .. } | KeyError::ReadData(_) => ErrorClass::Runtime,
            KeyError::MalformedPublicKey(_)
            | KeyError::MalformedSecretKey(_)
            | KeyError::KdfTooCostly { .. }
            | KeyError::WrongPassphrase(_)
            | KeyError::PassphraseNeeded(_)
            | KeyError::PassphraseUnavailable(_)
            | KeyError::PassphraseMismatch
            | KeyError::InvalidPassphrase(_)
            | KeyError::WeakPassphrase { .. }
            | KeyError::NoPassphraseSource
            | KeyError::PublicKeyGiven { .. }
            // Neither a file nor a key: the flag's value is wrong, as with any bad key text.
            | KeyError::NoSuchPublicKeyFile(_)
            | KeyError::AlreadyExists(_) => ErrorClass::Usage,
        }
    }
}

/// The 8-byte key id minisign puts in keys and signatures. qasid derives it from the public
/// key (first 8 bytes of its sha256) so that the same key always has the same id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn derive(key: &VerifyingKey) -> Self {
        Self::of_raw_key(key.as_bytes())
    }

    /// The id qasid derives for a raw 32-byte ed25519 key (whether or not it is a valid
    /// point): names a publisher folder the way its key is named.
    pub fn of_raw_key(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    /// The raw bytes, in the order they appear in minisign structures.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// An id read from a signed structure (a mirror note names its signer this way). It only
    /// says which trusted key to try; the signature decides.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for KeyId {
    /// Shown the way minisign shows key ids: the bytes as a little-endian u64 in upper hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A publisher's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    key: VerifyingKey,
}

impl PublicKey {
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The raw 32-byte ed25519 key as lowercase hex: the publisher's folder name in repos.
    pub fn hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The one-line form: base64 of `"Ed" ‖ key id ‖ key`, the second line of a minisign
    /// public key file.
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(MINISIGN_ED);
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    /// Parses the one-line base64 form. The key id must be the one qasid derives from the key,
    /// so an id cannot be chosen to collide with another publisher's.
    pub fn from_base64(line: &str) -> Result<Self, KeyError> {
        let raw = B64
            .decode(line.trim())
            .map_err(|_| KeyError::MalformedPublicKey("invalid base64"))?;
        if raw.len() != 42 {
            return Err(KeyError::MalformedPublicKey("wrong length"));
        }
        if &raw[..2] != MINISIGN_ED {
            return Err(KeyError::MalformedPublicKey("not an Ed25519 key"));
        }
        let key_bytes: [u8; 32] = raw[10..42].try_into().expect("length checked");
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| KeyError::MalformedPublicKey("not a valid ed25519 point"))?;
        let public = Self::from_verifying_key(key);
        if raw[2..10] != public.id.0 {
            return Err(KeyError::MalformedPublicKey(
                "key id is not the one derived from the key",
            ));
        }
        Ok(public)
    }

    /// A key from its 32 raw bytes: a valid, not small-order ed25519 point.
    pub fn from_raw(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::MalformedPublicKey("not a valid ed25519 point"))?;
        if key.is_weak() {
            return Err(KeyError::MalformedPublicKey("a small-order point"));
        }
        Ok(Self::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> Self {
        Self {
            id: KeyId::derive(&key),
            key,
        }
    }

    /// The text of a minisign public key file.
    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// Parses a minisign public key file: an `untrusted comment:` line, then the base64 line.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines();
        let comment = lines
            .next()
            .ok_or(KeyError::MalformedPublicKey("empty file"))?;
        if !comment.starts_with("untrusted comment:") {
            return Err(KeyError::MalformedPublicKey(
                "first line is not an untrusted comment",
            ));
        }
        let line = lines
            .next()
            .ok_or(KeyError::MalformedPublicKey("missing key line"))?;
        Self::from_base64(line)
    }

    /// Reads `--publisher` values: a path to a `.pub` file if something exists there; else, if
    /// it has the shape of the one-line key (56 base64 characters), that inline key; else a
    /// path that does not exist ([`KeyError::NoSuchPublicKeyFile`]), so a mistyped file name is
    /// not reported as bad base64.
    pub fn from_arg(arg: &str) -> Result<Self, KeyError> {
        let path = Path::new(arg);
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                path: arg.to_owned(),
                source,
            })?;
            Self::from_file_text(&text)
        } else if looks_like_inline_key(arg.trim()) {
            Self::from_base64(arg)
        } else {
            Err(KeyError::NoSuchPublicKeyFile(arg.to_owned()))
        }
    }

    /// Checks `signature` over `domain ‖ message`. Uses strict verification (rejects
    /// non-canonical and small-order encodings) so a signature has one valid form.
    pub fn verify(
        &self,
        domain: Domain,
        message: &[u8],
        signature: &[u8; 64],
    ) -> Result<(), KeyError> {
        let signature = Signature::from_bytes(signature);
        let signed = [domain.prefix(), message].concat();
        self.key
            .verify_strict(&signed, &signature)
            .map_err(|_| KeyError::BadSignature(self.id))
    }

    /// Checks a signature over raw bytes with no domain prefix (minisign's own structures).
    pub(crate) fn verify_raw(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        self.key
            .verify_strict(message, &Signature::from_bytes(signature))
            .map_err(|_| KeyError::BadSignature(self.id))
    }
}

/// Whether `arg` has the shape of a one-line public key: base64 of 42 bytes is 56 characters of
/// the base64 alphabet, without padding.
fn looks_like_inline_key(arg: &str) -> bool {
    arg.len() == 56
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

/// A publisher's secret key. The inner key is zeroized on drop by ed25519-dalek. Its `Debug`
/// shows only the key id.
pub struct SecretKey {
    signing: SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// A key from a fixed 32-byte seed: for test vectors only, never for real publishers.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(signing.verifying_key());
        Self { signing, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `domain ‖ message`.
    pub fn sign(&self, domain: Domain, message: &[u8]) -> [u8; 64] {
        let signed = [domain.prefix(), message].concat();
        self.signing.sign(&signed).to_bytes()
    }

    /// Signs raw bytes with no domain prefix (minisign's own structures only).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_round_trips_through_both_forms() {
        let sk = SecretKey::from_seed(&[1u8; 32]);
        let pk = sk.public();
        assert_eq!(&PublicKey::from_base64(&pk.to_base64()).unwrap(), pk);
        assert_eq!(&PublicKey::from_file_text(&pk.to_file_text()).unwrap(), pk);
        assert_eq!(pk.to_base64().len(), 56);
    }

    #[test]
    fn signatures_are_domain_separated() {
        let sk = SecretKey::from_seed(&[2u8; 32]);
        let sig = sk.sign(Domain::BundleManifest, b"hello");
        sk.public()
            .verify(Domain::BundleManifest, b"hello", &sig)
            .unwrap();
        assert!(matches!(
            sk.public().verify(Domain::IndexHead, b"hello", &sig),
            Err(KeyError::BadSignature(_))
        ));
        assert!(sk
            .public()
            .verify(Domain::BundleManifest, b"hellO", &sig)
            .is_err());
    }

    #[test]
    fn a_missing_key_file_is_not_reported_as_bad_base64() {
        let err = PublicKey::from_arg("nonexist.pub").unwrap_err();
        assert!(matches!(err, KeyError::NoSuchPublicKeyFile(_)), "{err}");
        assert!(err.to_string().contains("no such file"), "{err}");
        let pk = SecretKey::from_seed(&[4u8; 32]).public().clone();
        assert_eq!(PublicKey::from_arg(&pk.to_base64()).unwrap(), pk);
        let mut damaged = pk.to_base64();
        damaged.replace_range(..1, "*");
        assert!(matches!(
            PublicKey::from_arg(&damaged),
            Err(KeyError::NoSuchPublicKeyFile(_))
        ));
    }

    #[test]
    fn a_chosen_key_id_is_refused() {
        let pk = SecretKey::from_seed(&[3u8; 32]).public().clone();
        let mut raw = B64.decode(pk.to_base64()).unwrap();
        raw[2] ^= 1;
        assert!(PublicKey::from_base64(&B64.encode(raw)).is_err());
    }
}
