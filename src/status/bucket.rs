//! `qasid status --store s3://…`: what a bucket store holds, read through the S3 API.
//!
//! Owns the bucket side of the operator's view: per publisher folder found in one bounded
//! listing, object counts and bytes, `index.json` verified against the publisher's authority
//! (its roots, read from the bucket and chained from the key the folder is named after), and
//! the newest head copies under `heads/` (docs/PROTOCOL.md §14) and the mirror note, each
//! verified. It only reads,
//! and reports what fails verification instead of stopping: the caller decides the exit code
//! from [`BucketStatus::unverified`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{index_status, PublisherStatus};
use crate::bucket::upload::{head_copy_sequence, KEPT_HEADS};
use crate::bucket::{Bucket, BucketError, ObjectInfo};
use crate::index::layout::{PublisherLayout, PREFIX};
use crate::index::SignedHead;
use crate::keys::PublicKey;
use crate::limits::{IndexLimits, MAX_NOTE_TEXT_BYTES, MAX_ROOT_BYTES, MAX_ROOT_VERSIONS};
use crate::note::SignedNote;
use crate::roots::{Authority, Chain};
use crate::store::PublisherId;

/// The report for a bucket store (its JSON is `qasid status --json`'s, docs/JSON.md).
#[derive(Debug, Serialize)]
pub struct BucketStatus {
    /// `s3://bucket/prefix`.
    pub store: String,
    pub publishers: Vec<PublisherStatus>,
}

/// The bucket's mirror note.
#[derive(Debug, Serialize)]
pub struct NoteStatus {
    /// Its signature and encoding verified against the publisher's authority.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// RFC 3339, UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired: Option<bool>,
    /// Why it does not verify.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One head copy under `heads/`.
#[derive(Debug, Serialize)]
pub struct HeadStatus {
    pub sequence: u64,
    /// Its signature verified against the publisher's authority.
    pub verified: bool,
}

impl BucketStatus {
    /// The first thing that failed verification, as one line naming the publisher; `None`
    /// when everything verified.
    pub fn unverified(&self) -> Option<String> {
        self.publishers.iter().find_map(|p| {
            let who = &p.publisher.key_id;
            if let Some(e) = &p.error {
                return Some(format!("{}: publisher {who}: {e}", self.store));
            }
            if let Some(e) = p.note.as_ref().and_then(|n| n.error.as_ref()) {
                return Some(format!("{}: publisher {who}: {e}", self.store));
            }
            let bad = p.heads.iter().flatten().find(|h| !h.verified)?;
            Some(format!(
                "{}: publisher {who}: head copy sequence {} under heads/ does not verify",
                self.store, bad.sequence
            ))
        })
    }
}

/// Reads the status of the bucket store `bucket` points at.
pub async fn read_bucket(bucket: &Bucket) -> Result<BucketStatus, BucketError> {
    let dir = format!("{PREFIX}/publishers/");
    let listed = bucket.list(&dir, bucket.limits().max_listed).await?;
    // A folder whose name is not a valid key was not made by qasid: not a publisher.
    let mut folders: BTreeMap<PublisherId, Vec<&ObjectInfo>> = BTreeMap::new();
    for object in &listed {
        let Some((folder, _)) = object
            .key
            .strip_prefix(&dir)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        if let Ok(id) = folder.parse::<PublisherId>() {
            folders.entry(id).or_default().push(object);
        }
    }
    let mut publishers = Vec::new();
    for (id, objects) in folders {
        let Ok(key) = PublicKey::from_raw(id.as_bytes()) else {
            continue;
        };
        publishers.push(publisher(bucket, &key, &objects).await?);
    }
    Ok(BucketStatus {
        store: bucket.url().to_string(),
        publishers,
    })
}

async fn publisher(
    bucket: &Bucket,
    key: &PublicKey,
    objects: &[&ObjectInfo],
) -> Result<PublisherStatus, BucketError> {
    let layout = PublisherLayout::new(key);
    let base = format!("{}/", layout.dir());
    let mut status = PublisherStatus::new(key);
    status.heads = Some(Vec::new());
    let mut heads = Vec::new();
    for object in objects {
        status.bytes += object.size;
        let name = object.key.strip_prefix(&base).unwrap_or(&object.key);
        if name.starts_with("bundles/") && name.ends_with(".zip") {
            status.bundles += 1;
        } else if name.starts_with("bundles/") && name.ends_with(".zip.minisig") {
            status.minisigs += 1;
        } else if name.starts_with("pieces/") && name.ends_with(".json") {
            status.pieces += 1;
        } else if name.starts_with("heads/") {
            if let Some(sequence) = head_copy_sequence(&object.key) {
                heads.push((sequence, object.key.clone()));
            }
        }
    }
    let limits = IndexLimits::default();
    let now = SystemTime::now();
    let authority = match authority(bucket, key, now).await? {
        Ok(authority) => authority,
        Err(e) => {
            status.refused(e);
            return Ok(status);
        }
    };
    if let Some(envelope) = bucket
        .get_bytes(&layout.index(), limits.max_head_bytes)
        .await?
    {
        match SignedHead::verify(&envelope, &authority, &limits) {
            Ok(head) => status.index = Some(index_status(&head, now)),
            Err(e) => status.refused(format!("index.json does not verify: {e}")),
        }
    }
    status.note = note(bucket, &layout, &authority, now).await?;
    // The newest head copies (the ones a writer keeps), each verified.
    heads.sort();
    let newest = heads.len().saturating_sub(KEPT_HEADS);
    let mut checked = Vec::new();
    for (sequence, object) in &heads[newest..] {
        let verified = match bucket.get_bytes(object, limits.max_head_bytes).await? {
            Some(bytes) => SignedHead::verify(&bytes, &authority, &limits)
                .is_ok_and(|h| h.head().sequence() == *sequence),
            // Pruned by a writer since the listing.
            None => continue,
        };
        checked.push(HeadStatus {
            sequence: *sequence,
            verified,
        });
    }
    status.heads = Some(checked);
    Ok(status)
}

/// The bucket's `note`, its signature checked (an expired one verifies, and says so).
async fn note(
    bucket: &Bucket,
    layout: &PublisherLayout,
    authority: &Authority,
    now: SystemTime,
) -> Result<Option<NoteStatus>, BucketError> {
    let bytes = match bucket.get_bytes(&layout.note(), MAX_NOTE_TEXT_BYTES).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => return Ok(None),
        Err(BucketError::TooLarge { limit, .. }) => Err(format!("larger than {limit} bytes")),
        Err(e) => return Err(e),
    };
    let verified = bytes.and_then(|bytes| {
        let text = std::str::from_utf8(&bytes).map_err(|_| "not UTF-8 text".to_owned())?;
        SignedNote::from_uri(text.trim_end())
            .and_then(|n| n.verify(std::slice::from_ref(authority)))
            .map_err(|e| e.to_string())
    });
    Ok(Some(match verified {
        Ok(note) => {
            let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(note.note().expires);
            NoteStatus {
                verified: true,
                sequence: Some(note.note().sequence),
                expires: Some(humantime::format_rfc3339_seconds(expires).to_string()),
                expired: Some(expires <= now),
                error: None,
            }
        }
        Err(reason) => NoteStatus {
            verified: false,
            sequence: None,
            expires: None,
            expired: None,
            error: Some(format!("the note does not verify: {reason}")),
        },
    }))
}

/// The publisher's authority now, from the roots the bucket holds (1, 2, … up to the first
/// missing one); `Err` with the reason when a root does not chain.
async fn authority(
    bucket: &Bucket,
    key: &PublicKey,
    now: SystemTime,
) -> Result<Result<Authority, String>, BucketError> {
    let layout = PublisherLayout::new(key);
    let mut chain = match Chain::open(key, None) {
        Ok(chain) => chain,
        Err(e) => return Ok(Err(format!("the roots do not verify: {e}"))),
    };
    for version in 1..=MAX_ROOT_VERSIONS {
        let Some(bytes) = bucket
            .get_bytes(&layout.root(version), MAX_ROOT_BYTES)
            .await?
        else {
            break;
        };
        if let Err(e) = chain.offer(&bytes) {
            return Ok(Err(format!("root {version} does not chain: {e}")));
        }
    }
    Ok(Ok(chain.authority(now)))
}
