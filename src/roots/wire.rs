//! The root document's one encoding: compact JSON, members in a fixed order, keys sorted by
//! their raw bytes, one trailing newline. The parser decodes, rebuilds the canonical bytes and
//! compares: any other spelling of the same document is refused.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{Delegation, Root, RootBody, RootError};
use crate::keys::{PublicKey, Role};
use crate::limits::{MAX_ROOT_BYTES, MAX_ROOT_KEYS, MAX_SIGNING_KEYS};

/// The `format` member of a root's signed payload.
pub const ROOT_FORMAT: &str = "qasid-root/1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWire {
    signed: PayloadWire,
    signatures: Vec<SignatureWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadWire {
    format: String,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    threshold: u64,
    root_keys: Vec<String>,
    signing_keys: Vec<DelegationWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegationWire {
    key: String,
    roles: Vec<String>,
    expires: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureWire {
    key: String,
    sig: String,
}

fn payload_wire(body: &RootBody) -> PayloadWire {
    PayloadWire {
        format: ROOT_FORMAT.to_owned(),
        version: body.version,
        previous: body.previous.as_ref().map(ToString::to_string),
        threshold: body.threshold,
        root_keys: body.root_keys.iter().map(PublicKey::to_base64).collect(),
        signing_keys: body
            .signing_keys
            .iter()
            .map(|d| DelegationWire {
                key: d.key.to_base64(),
                roles: d.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                expires: humantime::format_rfc3339_seconds(d.expires).to_string(),
            })
            .collect(),
    }
}

/// The signed payload: the compact JSON of the `signed` member.
pub(super) fn encode_payload(body: &RootBody) -> Vec<u8> {
    serde_json::to_vec(&payload_wire(body)).expect("serialising owned data cannot fail")
}

/// The whole file: `{"signed":…,"signatures":[…]}` and `\n`.
pub(super) fn encode_file(root: &Root) -> Vec<u8> {
    let wire = FileWire {
        signed: payload_wire(&root.body),
        signatures: root
            .signatures
            .iter()
            .map(|(k, s)| SignatureWire {
                key: k.to_base64(),
                sig: B64.encode(s),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&wire).expect("serialising owned data cannot fail");
    bytes.push(b'\n');
    bytes
}

fn malformed(reason: impl Into<String>) -> RootError {
    RootError::Malformed(reason.into())
}

fn key(text: &str, what: &str) -> Result<PublicKey, RootError> {
    // from_base64 trims; the canonical comparison below catches any whitespace.
    PublicKey::from_base64(text).map_err(|e| malformed(format!("{what}: {e}")))
}

/// Accepts exactly `YYYY-MM-DDTHH:MM:SSZ`.
fn time(text: &str) -> Result<SystemTime, RootError> {
    let t = humantime::parse_rfc3339(text)
        .ok()
        .filter(|t| humantime::format_rfc3339_seconds(*t).to_string() == text)
        .ok_or_else(|| malformed(format!("expires {text:?} is not YYYY-MM-DDTHH:MM:SSZ")))?;
    Ok(t)
}

/// Strictly increasing by raw key bytes: sorted and free of duplicates.
fn strictly_sorted<'a>(keys: impl Iterator<Item = &'a PublicKey>) -> bool {
    let keys: Vec<_> = keys.map(|k| k.as_bytes()).collect();
    keys.windows(2).all(|w| w[0] < w[1])
}

/// The rules a body must follow, for parsed and freshly built roots alike.
pub(super) fn check_body(body: &RootBody) -> Result<(), RootError> {
    if body.version == 0 {
        return Err(malformed("version must be at least 1"));
    }
    if (body.version == 1) != body.previous.is_none() {
        return Err(malformed(
            "previous (the sha256 of the previous root's payload) is required from version 2 on, and absent in root 1",
        ));
    }
    let n = body.root_keys.len();
    if n == 0 || n > MAX_ROOT_KEYS {
        return Err(malformed(format!(
            "between 1 and {MAX_ROOT_KEYS} root keys are allowed, not {n}"
        )));
    }
    if !strictly_sorted(body.root_keys.iter()) {
        return Err(malformed("root keys must be sorted by key and listed once"));
    }
    if body.threshold == 0 || body.threshold > n as u64 {
        return Err(malformed(format!(
            "threshold {} is not between 1 and the {n} root keys",
            body.threshold
        )));
    }
    let m = body.signing_keys.len();
    if m == 0 || m > MAX_SIGNING_KEYS {
        return Err(malformed(format!(
            "between 1 and {MAX_SIGNING_KEYS} signing keys are allowed, not {m}"
        )));
    }
    if !strictly_sorted(body.signing_keys.iter().map(|d| &d.key)) {
        return Err(malformed(
            "signing keys must be sorted by key and listed once",
        ));
    }
    for d in &body.signing_keys {
        let canonical: Vec<Role> = Role::ALL
            .into_iter()
            .filter(|r| d.roles.contains(r))
            .collect();
        if d.roles.is_empty() || canonical != d.roles {
            return Err(malformed(format!(
                "signing key {}: roles must be a non-empty list of bundle, index, note in that order, each once",
                d.key.id()
            )));
        }
    }
    Ok(())
}

pub(super) fn parse(bytes: &[u8]) -> Result<Root, RootError> {
    if bytes.len() as u64 > MAX_ROOT_BYTES {
        return Err(RootError::TooLarge {
            limit: MAX_ROOT_BYTES,
        });
    }
    let wire: FileWire = serde_json::from_slice(bytes)
        .map_err(|e| malformed(crate::manifest::printable(e.to_string().as_bytes())))?;
    if wire.signed.format != ROOT_FORMAT {
        return Err(RootError::UnknownFormat {
            found: crate::manifest::printable(wire.signed.format.as_bytes()),
            expected: ROOT_FORMAT,
        });
    }
    let body = RootBody {
        version: wire.signed.version,
        previous: wire
            .signed
            .previous
            .as_deref()
            .map(|h| {
                h.parse::<crate::content_id::ContentId>()
                    .map_err(|e| malformed(format!("previous: {e}")))
            })
            .transpose()?,
        threshold: wire.signed.threshold,
        root_keys: wire
            .signed
            .root_keys
            .iter()
            .map(|k| key(k, "root key"))
            .collect::<Result<_, _>>()?,
        signing_keys: wire
            .signed
            .signing_keys
            .iter()
            .map(|d| {
                Ok(Delegation {
                    key: key(&d.key, "signing key")?,
                    roles: d
                        .roles
                        .iter()
                        .map(|r| {
                            Role::parse(r).ok_or_else(|| {
                                malformed(format!(
                                    "unknown role {:?}",
                                    crate::manifest::printable(r.as_bytes())
                                ))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    expires: time(&d.expires)?,
                })
            })
            .collect::<Result<_, RootError>>()?,
    };
    check_body(&body)?;
    if wire.signatures.len() > 2 * MAX_ROOT_KEYS {
        return Err(malformed("too many signatures"));
    }
    let signatures = wire
        .signatures
        .iter()
        .map(|s| {
            let sig: [u8; 64] = B64
                .decode(&s.sig)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| malformed("a signature is not 64 bytes of base64"))?;
            Ok((key(&s.key, "signature key")?, sig))
        })
        .collect::<Result<Vec<_>, RootError>>()?;
    if !strictly_sorted(signatures.iter().map(|(k, _)| k)) {
        return Err(malformed("signatures must be sorted by key, one per key"));
    }
    let root = Root {
        payload: encode_payload(&body),
        body,
        signatures,
    };
    if encode_file(&root) != bytes {
        return Err(RootError::NonCanonical);
    }
    Ok(root)
}
