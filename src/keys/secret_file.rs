//! The minisign secret key file format (`publisher.key`): its byte layout, checksum and scrypt
//! encryption.
//!
//! A file is an `untrusted comment:` line and one base64 line of
//! `"Ed" ‖ kdf_alg ‖ "B2" ‖ salt(32) ‖ opslimit(u64 LE) ‖ memlimit(u64 LE) ‖ keynum_sk`, where
//! `keynum_sk = key id(8) ‖ seed(32) ‖ public key(32) ‖ BLAKE2b-256("Ed" ‖ key id ‖ seed ‖ public
//! key)`. With kdf_alg `"Sc"`, keynum_sk is XORed with 104 bytes of libsodium's
//! `crypto_pwhash_scryptsalsa208sha256(passphrase, salt, opslimit, memlimit)`; with two zero
//! bytes it is stored as is. `minisign -S` signs with every file written here. Reading refuses
//! any key whose id is not the one qasid derives from it, whose public half does not match its
//! seed, or whose scrypt cost is above the caps below. This module never touches files or the
//! terminal: callers pass text and a passphrase.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore as _};
use zeroize::Zeroizing;

use super::{KeyError, Passphrase, SecretKey, MINISIGN_ED};

const KDF_SCRYPT: &[u8; 2] = b"Sc";
const KDF_NONE: &[u8; 2] = &[0, 0];
const CHK_BLAKE2B: &[u8; 2] = b"B2";
const SALT_LEN: usize = 32;
/// Key id (8) ‖ seed (32) ‖ public key (32) ‖ checksum (32): the part scrypt's output covers.
const KEYNUM_SK_LEN: usize = 104;
/// Where the checksum starts inside keynum_sk; everything before it is checksummed.
const CHK_AT: usize = 72;
/// The whole decoded key line: algorithm tags (6), salt, opslimit, memlimit, keynum_sk.
const RAW_LEN: usize = 6 + SALT_LEN + 8 + 8 + KEYNUM_SK_LEN;

/// libsodium fixes scrypt's block size parameter r at 8.
const SCRYPT_R: u64 = 8;

/// Largest scrypt table (128·r·N bytes) a key file may ask for: 1 GiB. That is what minisign
/// itself asks for (libsodium's `MEMLIMIT_SENSITIVE`), so every minisign-encrypted key opens,
/// while a damaged or hostile file cannot make qasid allocate without bound.
const KDF_TABLE_CAP: u64 = 1 << 30;

/// Largest scrypt block buffer (128·r·p bytes): 16 MiB, p ≤ 16384. libsodium derives a large p
/// only when a tiny memlimit meets a huge opslimit; minisign's own files use p = 1.
const KDF_LANES_CAP: u64 = 16 << 20;

/// libsodium's `crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_MAX`. It also bounds time: N·p is
/// at most opslimit / 32, 128 times minisign's default.
const KDF_OPSLIMIT_MAX: u64 = 0xffff_ffff;

/// libsodium's scrypt cost knobs, as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KdfLimits {
    opslimit: u64,
    memlimit: u64,
}

impl KdfLimits {
    /// What qasid writes into new encrypted keys: scrypt with N = 2^18, r = 8, p = 1, which
    /// needs 256 MiB of memory and 0.75 s per unlock (release build, one core of the 2-core CI
    /// machine). Memory-hard so that guessing the passphrase of a seized key file costs an
    /// attacker 256 MiB per parallel guess; a quarter of minisign's own 1 GiB so that publishers
    /// on small laptops and cheap servers can still sign, and a second or less per unlock
    /// because a publisher unlocks for every bundle.
    const WRITE: Self = Self {
        opslimit: 1 << 23,
        memlimit: 1 << 28,
    };

    /// The scrypt parameters libsodium derives from these limits (its `pickparams`), refused
    /// if they exceed qasid's caps.
    fn scrypt_params(self) -> Result<scrypt::Params, KeyError> {
        let too_costly = KeyError::KdfTooCostly {
            opslimit: self.opslimit,
            memlimit: self.memlimit,
        };
        if self.opslimit > KDF_OPSLIMIT_MAX {
            return Err(too_costly);
        }
        let (log_n, p) = pick_params(self.opslimit, self.memlimit);
        // 128·r·2^30 already exceeds the table cap; checking first keeps the shift in range.
        if log_n > 30
            || (128 * SCRYPT_R) << log_n > KDF_TABLE_CAP
            || 128 * SCRYPT_R * p > KDF_LANES_CAP
        {
            return Err(too_costly);
        }
        let log_n = u8::try_from(log_n).expect("log_n checked above");
        let p = u32::try_from(p).expect("p bounded by the lanes cap");
        scrypt::Params::new(log_n, SCRYPT_R as u32, p, scrypt::Params::RECOMMENDED_LEN)
            .map_err(|_| KeyError::MalformedSecretKey("scrypt parameters libsodium would refuse"))
    }
}

/// libsodium's `pickparams` for `crypto_pwhash_scryptsalsa208sha256`: returns (log2 N, p) for
/// r = 8. opslimit is raised to 32768; if memory allows, p = 1 and N follows opslimit,
/// otherwise N follows memlimit and p takes up the remaining operations.
fn pick_params(opslimit: u64, memlimit: u64) -> (u32, u64) {
    let opslimit = opslimit.max(32_768);
    if opslimit < memlimit / 32 {
        (log_n_above_half(opslimit / (SCRYPT_R * 4)), 1)
    } else {
        let log_n = log_n_above_half(memlimit / (SCRYPT_R * 128));
        let rp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
        (log_n, rp / SCRYPT_R)
    }
}

/// The smallest log2 N in 1..=63 with N > max_n / 2: libsodium's search loop.
fn log_n_above_half(max_n: u64) -> u32 {
    let mut log_n = 1;
    while log_n < 63 && (1u64 << log_n) <= max_n / 2 {
        log_n += 1;
    }
    log_n
}

/// The 104 bytes XORed over keynum_sk.
fn scrypt_stream(
    passphrase: &Passphrase,
    salt: &[u8; SALT_LEN],
    params: &scrypt::Params,
) -> Zeroizing<[u8; KEYNUM_SK_LEN]> {
    let mut stream = Zeroizing::new([0u8; KEYNUM_SK_LEN]);
    scrypt::scrypt(passphrase.as_bytes(), salt, params, &mut stream[..])
        .expect("104 bytes is a valid scrypt output length");
    stream
}

fn xor_in_place(target: &mut [u8; KEYNUM_SK_LEN], stream: &[u8; KEYNUM_SK_LEN]) {
    for (byte, key) in target.iter_mut().zip(stream) {
        *byte ^= key;
    }
}

/// BLAKE2b-256 of `"Ed" ‖ key id ‖ seed ‖ public key`, as minisign computes it.
fn checksum(keynum_sk: &[u8; KEYNUM_SK_LEN]) -> [u8; 32] {
    Blake2b::<U32>::new()
        .chain_update(MINISIGN_ED)
        .chain_update(&keynum_sk[..CHK_AT])
        .finalize()
        .into()
}

/// How a key file's keynum_sk is protected.
enum Kdf {
    None,
    /// Parameters already checked against the caps, so a passphrase is only asked for keys
    /// qasid will actually try to open.
    Scrypt {
        salt: [u8; SALT_LEN],
        params: scrypt::Params,
    },
}

/// An encrypted key's passphrase, salt and cost, as written.
struct Encryption<'a> {
    passphrase: &'a Passphrase,
    salt: [u8; SALT_LEN],
    limits: KdfLimits,
}

/// A parsed key file whose keynum_sk may still be encrypted.
struct KeyFile {
    kdf: Kdf,
    keynum_sk: Zeroizing<[u8; KEYNUM_SK_LEN]>,
}

impl KeyFile {
    fn parse(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines();
        let comment = lines
            .next()
            .ok_or(KeyError::MalformedSecretKey("empty file"))?;
        if !comment.starts_with("untrusted comment:") {
            return Err(KeyError::MalformedSecretKey(
                "first line is not an untrusted comment",
            ));
        }
        let line = lines
            .next()
            .ok_or(KeyError::MalformedSecretKey("missing key line"))?;
        if lines.any(|rest| !rest.trim().is_empty()) {
            return Err(KeyError::MalformedSecretKey(
                "unexpected text after the key line",
            ));
        }
        let raw = Zeroizing::new(
            B64.decode(line.trim())
                .map_err(|_| KeyError::MalformedSecretKey("invalid base64"))?,
        );
        if raw.len() != RAW_LEN {
            return Err(KeyError::MalformedSecretKey("wrong length"));
        }
        if &raw[..2] != MINISIGN_ED {
            return Err(KeyError::MalformedSecretKey("not an Ed25519 key"));
        }
        if &raw[4..6] != CHK_BLAKE2B {
            return Err(KeyError::MalformedSecretKey(
                "unsupported checksum algorithm",
            ));
        }
        let kdf = match &raw[2..4] {
            alg if alg == KDF_NONE => Kdf::None,
            alg if alg == KDF_SCRYPT => Kdf::Scrypt {
                salt: raw[6..38].try_into().expect("length checked"),
                params: KdfLimits {
                    opslimit: u64::from_le_bytes(raw[38..46].try_into().expect("length checked")),
                    memlimit: u64::from_le_bytes(raw[46..54].try_into().expect("length checked")),
                }
                .scrypt_params()?,
            },
            _ => {
                return Err(KeyError::MalformedSecretKey(
                    "unsupported key derivation function",
                ))
            }
        };
        let mut keynum_sk = Zeroizing::new([0u8; KEYNUM_SK_LEN]);
        keynum_sk.copy_from_slice(&raw[54..]);
        Ok(Self { kdf, keynum_sk })
    }
}

/// The key file text, unencrypted or encrypted as `encryption` says.
fn encode(sk: &SecretKey, encryption: Option<Encryption<'_>>) -> String {
    let mut keynum_sk = Zeroizing::new([0u8; KEYNUM_SK_LEN]);
    keynum_sk[..8].copy_from_slice(sk.public.id.as_bytes());
    keynum_sk[8..40].copy_from_slice(sk.signing.as_bytes());
    keynum_sk[40..CHK_AT].copy_from_slice(sk.public.as_bytes());
    let chk = checksum(&keynum_sk);
    keynum_sk[CHK_AT..].copy_from_slice(&chk);

    let mut raw = Zeroizing::new(Vec::with_capacity(RAW_LEN));
    raw.extend_from_slice(MINISIGN_ED);
    match encryption {
        // Zero salt and limits, as `minisign -G -W` writes them.
        None => {
            raw.extend_from_slice(KDF_NONE);
            raw.extend_from_slice(CHK_BLAKE2B);
            raw.extend_from_slice(&[0u8; SALT_LEN + 16]);
        }
        Some(Encryption {
            passphrase,
            salt,
            limits,
        }) => {
            let params = limits
                .scrypt_params()
                .expect("qasid writes only limits within its own caps");
            xor_in_place(&mut keynum_sk, &scrypt_stream(passphrase, &salt, &params));
            raw.extend_from_slice(KDF_SCRYPT);
            raw.extend_from_slice(CHK_BLAKE2B);
            raw.extend_from_slice(&salt);
            raw.extend_from_slice(&limits.opslimit.to_le_bytes());
            raw.extend_from_slice(&limits.memlimit.to_le_bytes());
        }
    }
    raw.extend_from_slice(&keynum_sk[..]);
    format!(
        "untrusted comment: qasid secret key {}\n{}\n",
        sk.public.id,
        B64.encode(&raw[..])
    )
}

/// Reads a key file; `name` says which key in errors (a path, or `<text>`).
pub(super) fn decode(
    text: &str,
    passphrase: Option<&Passphrase>,
    name: &str,
) -> Result<SecretKey, KeyError> {
    let KeyFile { kdf, mut keynum_sk } = KeyFile::parse(text)?;
    let encrypted = match kdf {
        Kdf::None => false,
        Kdf::Scrypt { salt, params } => {
            let passphrase =
                passphrase.ok_or_else(|| KeyError::PassphraseNeeded(name.to_owned()))?;
            xor_in_place(&mut keynum_sk, &scrypt_stream(passphrase, &salt, &params));
            true
        }
    };
    let checksum_ok = checksum(&keynum_sk) == keynum_sk[CHK_AT..];
    if encrypted && !checksum_ok {
        return Err(KeyError::WrongPassphrase(name.to_owned()));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&keynum_sk[8..40]);
    let sk = SecretKey::from_signing_key(SigningKey::from_bytes(&seed));
    if sk.public.as_bytes()[..] != keynum_sk[40..CHK_AT] {
        return Err(KeyError::MalformedSecretKey(
            "public half does not match the secret seed",
        ));
    }
    if sk.public.id.as_bytes()[..] != keynum_sk[..8] {
        return Err(KeyError::MalformedSecretKey(
            "key id is not the one qasid derives from the key (keys made by minisign -G cannot be used)",
        ));
    }
    if !checksum_ok {
        return Err(KeyError::MalformedSecretKey(
            "checksum does not match: the file is damaged",
        ));
    }
    Ok(sk)
}

impl SecretKey {
    /// The text of a minisign secret key file for this key, with the qasid-derived key id.
    /// With a passphrase the key is scrypt-encrypted (256 MiB, about a second; see
    /// `KdfLimits::WRITE`) under a fresh random salt; without one the text *is* the secret key.
    pub fn to_file_text(&self, passphrase: Option<&Passphrase>) -> String {
        encode(
            self,
            passphrase.map(|passphrase| {
                let mut salt = [0u8; SALT_LEN];
                OsRng.fill_bytes(&mut salt);
                Encryption {
                    passphrase,
                    salt,
                    limits: KdfLimits::WRITE,
                }
            }),
        )
    }

    /// Reads a minisign secret key file written by qasid (or re-encrypted by `minisign -C`).
    /// An encrypted file needs `passphrase` ([`KeyError::PassphraseNeeded`] without it); an
    /// unencrypted file ignores it.
    pub fn from_file_text(text: &str, passphrase: Option<&Passphrase>) -> Result<Self, KeyError> {
        decode(text, passphrase, "<text>")
    }

    /// Whether a key file is encrypted (so a passphrase must be asked for), after checking its
    /// structure and that its scrypt cost is within qasid's caps.
    pub fn is_encrypted_file(text: &str) -> Result<bool, KeyError> {
        Ok(matches!(KeyFile::parse(text)?.kdf, Kdf::Scrypt { .. }))
    }
}

/// An encrypted key file at a cost low enough for unit tests (N = 2^10, 1 MiB).
#[cfg(test)]
pub(super) fn cheaply_encrypted(sk: &SecretKey, passphrase: &Passphrase) -> String {
    encode(
        sk,
        Some(Encryption {
            passphrase,
            salt: [9u8; SALT_LEN],
            limits: KdfLimits {
                opslimit: 32_768,
                memlimit: 1 << 24,
            },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors made independently of this code, with Python's hashlib BLAKE2b and libsodium
    // 1.0.18 (`crypto_sign_seed_keypair`, `crypto_pwhash_scryptsalsa208sha256`) through ctypes,
    // for seed [7; 32] and passphrase "qasid test passphrase". `minisign -S` signs with
    // UNENCRYPTED_VECTOR (see minisig's vector test).
    const UNENCRYPTED_VECTOR: &str = "untrusted comment: qasid secret key E64CABF3122C81FE\n\
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/oEsEvOrTOYHBwcHBwcH\
        BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHB+pKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIskYL/WNAiYlUmKcGh\
        9YZH3RJKSC/gODU22vhVtWyvMQQ=\n";
    /// Salt 00 01 .. 1f, opslimit 2^17, memlimit 2^20 (libsodium picks N = 2^10, p = 4).
    const ENCRYPTED_VECTOR: &str = "untrusted comment: qasid secret key E64CABF3122C81FE\n\
        RWRTY0IyAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AAAIAAAAAAAAAEAAAAAAAajH8K+ETV9LPiWgMRyZE\
        4Crj/vAVFTTJiIgger9awPOaGdxK4/ceNBL33Z7ttz2jAi5E9wYjLvWT+GOf4CCHIXnwKjGevqrRoeN4pIbovHdz4tse\
        inr0kkGt1BAGtcIQqowV+Dz5XnY=\n";
    const VECTOR_PASSPHRASE: &str = "qasid test passphrase";
    const VECTOR_LIMITS: KdfLimits = KdfLimits {
        opslimit: 1 << 17,
        memlimit: 1 << 20,
    };

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::new(text.to_owned()).unwrap()
    }

    fn vector_key() -> SecretKey {
        SecretKey::from_seed(&[7u8; 32])
    }

    /// Decodes a key file's base64 line, lets `edit` change the raw bytes, re-encodes.
    fn edit_raw(text: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let (comment, line) = text.trim_end().split_once('\n').unwrap();
        let mut raw = B64.decode(line).unwrap();
        edit(&mut raw);
        format!("{comment}\n{}\n", B64.encode(raw))
    }

    /// Sets the stored public key, then recomputes the checksum so only that check can fail.
    fn rechecksummed(raw: &mut [u8]) {
        let mut keynum_sk = [0u8; KEYNUM_SK_LEN];
        keynum_sk.copy_from_slice(&raw[54..]);
        let chk = checksum(&keynum_sk);
        raw[54 + CHK_AT..].copy_from_slice(&chk);
    }

    #[test]
    fn unencrypted_key_file_matches_libsodium_vector() {
        let sk = vector_key();
        assert_eq!(sk.to_file_text(None), UNENCRYPTED_VECTOR);
        let read = SecretKey::from_file_text(UNENCRYPTED_VECTOR, None).unwrap();
        assert_eq!(read.public(), sk.public());
        assert!(!SecretKey::is_encrypted_file(UNENCRYPTED_VECTOR).unwrap());
    }

    #[test]
    fn encrypted_key_file_matches_libsodium_vector() {
        let pass = passphrase(VECTOR_PASSPHRASE);
        let salt: [u8; SALT_LEN] = std::array::from_fn(|i| i as u8);
        let written = encode(
            &vector_key(),
            Some(Encryption {
                passphrase: &pass,
                salt,
                limits: VECTOR_LIMITS,
            }),
        );
        assert_eq!(written, ENCRYPTED_VECTOR);
        let read = SecretKey::from_file_text(ENCRYPTED_VECTOR, Some(&pass)).unwrap();
        assert_eq!(read.public(), vector_key().public());
        assert!(SecretKey::is_encrypted_file(ENCRYPTED_VECTOR).unwrap());
    }

    #[test]
    fn scrypt_stream_matches_libsodium_in_both_parameter_branches() {
        // crypto_pwhash_scryptsalsa208sha256(104, passphrase, salt [0x11; 32], ops, mem).
        let cases = [
            (
                KdfLimits {
                    opslimit: 32_768,
                    memlimit: 1 << 24,
                },
                "39f7fe828abf83dbe645e78fc0d046dcb8dd0b4b42dad16c809f89c9324a0e4d98f080eda1f692a9\
                 114901d98f57389da76367dc5eadfd837e3dcd766ae9379239c0809ceef2ca1e70a689e21884a740\
                 cf8a89ab5383deb9c5fe7f02834f51fa05110315f42c4824",
            ),
            (
                VECTOR_LIMITS,
                "71aa9731e98747a62d5c669d6ae950935404071572e741f16fbfeb3d8be962e19d660af5d172514a\
                 ef5997115cfe57385339a9dc55ea16a3c7f09608409bde489002fa93c0893b9f5f671d3b78610e88\
                 dd780a3005dc026233a32ff8894b8537509ed79b7038e456",
            ),
        ];
        for (limits, expected) in cases {
            let params = limits.scrypt_params().unwrap();
            let stream = scrypt_stream(&passphrase(VECTOR_PASSPHRASE), &[0x11; SALT_LEN], &params);
            assert_eq!(hex::encode(&stream[..]), expected, "{limits:?}");
        }
    }

    #[test]
    fn pick_params_matches_libsodium() {
        // (opslimit, memlimit) -> (log2 N, p), worked through libsodium's pickparams.
        let cases = [
            ((1 << 25, 1 << 30), (20, 1)), // minisign's default (OPSLIMIT/MEMLIMIT_SENSITIVE)
            ((1 << 23, 1 << 28), (18, 1)), // KdfLimits::WRITE: 256 MiB
            ((32_768, 1 << 24), (10, 1)),  // opslimit-bound branch
            ((1 << 17, 1 << 20), (10, 4)), // memlimit-bound branch with p > 1
            ((0, 0), (1, 512)),            // opslimit raised to 32768
        ];
        for ((opslimit, memlimit), expected) in cases {
            assert_eq!(
                pick_params(opslimit, memlimit),
                expected,
                "{opslimit} {memlimit}"
            );
        }
        let write = KdfLimits::WRITE.scrypt_params().unwrap();
        assert_eq!((write.log_n(), write.r(), write.p()), (18, 8, 1));
    }

    #[test]
    fn minisign_default_cost_is_accepted_and_higher_costs_are_refused() {
        let minisign_default = KdfLimits {
            opslimit: 1 << 25,
            memlimit: 1 << 30,
        };
        assert!(minisign_default.scrypt_params().is_ok());
        for (opslimit, memlimit) in [
            (1 << 26, 1 << 31),   // a 2 GiB table
            (1 << 33, 1 << 30),   // above libsodium's OPSLIMIT_MAX
            (0xffff_ffff, 0),     // N = 2, p = 2^26: 64 GiB of blocks
            (u64::MAX, u64::MAX), // N far beyond anything
        ] {
            assert!(
                matches!(
                    KdfLimits { opslimit, memlimit }.scrypt_params(),
                    Err(KeyError::KdfTooCostly { .. })
                ),
                "{opslimit} {memlimit}"
            );
        }
    }

    #[test]
    fn too_costly_key_file_is_refused_before_asking_for_a_passphrase() {
        let text = edit_raw(ENCRYPTED_VECTOR, |raw| {
            raw[46..54].copy_from_slice(&(1u64 << 31).to_le_bytes());
            raw[38..46].copy_from_slice(&(1u64 << 26).to_le_bytes());
        });
        assert!(matches!(
            SecretKey::is_encrypted_file(&text),
            Err(KeyError::KdfTooCostly { memlimit, .. }) if memlimit == 1 << 31
        ));
    }

    #[test]
    fn encrypted_key_round_trips() {
        let sk = SecretKey::generate();
        let pass = passphrase("correct horse battery staple");
        let text = cheaply_encrypted(&sk, &pass);
        let read = SecretKey::from_file_text(&text, Some(&pass)).unwrap();
        assert_eq!(read.public(), sk.public());
        assert_eq!(read.to_file_text(None), sk.to_file_text(None));
    }

    #[test]
    fn wrong_passphrase_is_reported() {
        let text = cheaply_encrypted(&vector_key(), &passphrase("right"));
        assert!(matches!(
            SecretKey::from_file_text(&text, Some(&passphrase("wrong"))),
            Err(KeyError::WrongPassphrase(name)) if name == "<text>"
        ));
    }

    #[test]
    fn encrypted_key_needs_a_passphrase() {
        let text = cheaply_encrypted(&vector_key(), &passphrase("right"));
        assert!(SecretKey::is_encrypted_file(&text).unwrap());
        assert!(matches!(
            SecretKey::from_file_text(&text, None),
            Err(KeyError::PassphraseNeeded(_))
        ));
    }

    #[test]
    fn tampered_checksum_is_refused() {
        let text = edit_raw(UNENCRYPTED_VECTOR, |raw| raw[RAW_LEN - 1] ^= 1);
        assert!(matches!(
            SecretKey::from_file_text(&text, None),
            Err(KeyError::MalformedSecretKey(reason)) if reason.contains("checksum")
        ));
    }

    #[test]
    fn tampered_encrypted_key_reads_as_wrong_passphrase() {
        let pass = passphrase("right");
        let text = edit_raw(&cheaply_encrypted(&vector_key(), &pass), |raw| raw[60] ^= 1);
        assert!(matches!(
            SecretKey::from_file_text(&text, Some(&pass)),
            Err(KeyError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn a_key_id_not_derived_from_the_key_is_refused() {
        // What a key made by `minisign -G` looks like: a random key id, valid checksum.
        let text = edit_raw(UNENCRYPTED_VECTOR, |raw| {
            raw[54..62].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            rechecksummed(raw);
        });
        assert!(matches!(
            SecretKey::from_file_text(&text, None),
            Err(KeyError::MalformedSecretKey(reason)) if reason.contains("key id")
        ));
    }

    #[test]
    fn a_public_half_not_matching_the_seed_is_refused() {
        let other = SecretKey::from_seed(&[8u8; 32]);
        let text = edit_raw(UNENCRYPTED_VECTOR, |raw| {
            raw[54 + 40..54 + CHK_AT].copy_from_slice(other.public().as_bytes());
            rechecksummed(raw);
        });
        assert!(matches!(
            SecretKey::from_file_text(&text, None),
            Err(KeyError::MalformedSecretKey(reason)) if reason.contains("public half")
        ));
    }

    #[test]
    fn unknown_algorithms_and_shapes_are_refused() {
        let bad = [
            edit_raw(UNENCRYPTED_VECTOR, |raw| raw[..2].copy_from_slice(b"ED")),
            edit_raw(UNENCRYPTED_VECTOR, |raw| raw[2..4].copy_from_slice(b"Ar")),
            edit_raw(UNENCRYPTED_VECTOR, |raw| raw[4..6].copy_from_slice(b"S2")),
            edit_raw(UNENCRYPTED_VECTOR, |raw| raw.push(0)),
            UNENCRYPTED_VECTOR.replace("untrusted comment:", "comment:"),
            format!("{UNENCRYPTED_VECTOR}trailing\n"),
            "untrusted comment: x\n".to_owned(),
            String::new(),
        ];
        for text in bad {
            assert!(
                matches!(
                    SecretKey::is_encrypted_file(&text),
                    Err(KeyError::MalformedSecretKey(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn crlf_line_endings_are_read() {
        let text = UNENCRYPTED_VECTOR.replace('\n', "\r\n");
        let read = SecretKey::from_file_text(&text, None).unwrap();
        assert_eq!(read.public(), vector_key().public());
    }
}
