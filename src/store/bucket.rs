//! A store whose served copy is a bucket: the store's folder is then the bucket's local work
//! folder (verified objects, temp files, index history), and every `index.json` install first
//! puts the new state into the bucket by the rules of [`crate::bucket::upload`] (objects the
//! bucket lacks, verified from the work folder's files, then `index.json` by the `heads/`
//! rule). The history checks run against the bucket's own `index.json` there: an upload that
//! finds the bucket newer leaves it alone, one that finds another history is refused. Syncs,
//! and pushes to a front end (`qasid mirror --store s3://…`), go through the same install, so
//! both land in the bucket.

use std::sync::Arc;

use super::{Store, StoreError};
use crate::bucket::upload::{self, HeadOutcome, Mode, Publication};
use crate::bucket::Bucket;
use crate::index::Index;
use crate::keys::PublicKey;

/// The bucket a store uploads to, and the runtime its requests run on (store methods block:
/// they are called from blocking threads, which wait on the runtime for the upload).
pub struct BucketSink {
    pub bucket: Bucket,
    pub runtime: tokio::runtime::Handle,
}

impl Store {
    /// Makes this store the work folder of `sink`'s bucket: from now on every index install
    /// uploads there first. Set once, before the store is shared.
    pub fn set_bucket(&self, sink: BucketSink) {
        if self.bucket.set(sink).is_err() {
            tracing::warn!("the store's bucket was already set: the first one is kept");
        }
    }

    /// The bucket this store uploads to, if any.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.bucket.get().map(|s| &s.bucket)
    }

    /// Puts the publisher's installed index and everything it lists into the bucket, checking
    /// every object there by size and ETag and replacing what differs ([`Mode::Full`]): what a
    /// `sync --once` does after its round, so a bucket that lost or had objects corrupted is
    /// repaired even when no upstream had anything new. Blocking. `Ok(None)` without a bucket
    /// or an installed index.
    pub fn reconcile_bucket(
        &self,
        publisher: &PublicKey,
    ) -> Result<Option<upload::Published>, StoreError> {
        let Some(sink) = self.bucket.get() else {
            return Ok(None);
        };
        let Some(index) = self.index(publisher)? else {
            return Ok(None);
        };
        let publication = self.publication(publisher, index)?;
        sink.runtime
            .block_on(upload::publish(&sink.bucket, &publication, Mode::Full))
            .map(Some)
            .map_err(StoreError::Bucket)
    }

    /// Uploads what `index` needs to the bucket (if there is one), `index.json` last; called by
    /// the index install once everything is in the work folder, before its own `index.json`
    /// is written.
    pub(super) fn upload(&self, publisher: &PublicKey, index: &Index) -> Result<(), StoreError> {
        let Some(sink) = self.bucket.get() else {
            return Ok(());
        };
        let publication = self.publication(publisher, Arc::new(index.clone()))?;
        let done = sink
            .runtime
            .block_on(upload::publish(&sink.bucket, &publication, Mode::Delta))
            .map_err(StoreError::Bucket)?;
        match done.head {
            HeadOutcome::BucketNewer { held } => tracing::info!(
                "{}: the bucket already holds a newer index (sequence {held}) than {}: left as is",
                sink.bucket.url(),
                index.head().sequence()
            ),
            HeadOutcome::Written { .. } | HeadOutcome::Unchanged => tracing::info!(
                objects = done.objects,
                bytes = done.bytes,
                "{}: uploaded index sequence {}",
                sink.bucket.url(),
                index.head().sequence()
            ),
        }
        Ok(())
    }

    /// Uploads a verified note to the bucket (if there is one) unless the bucket holds a newer
    /// one; called by the note install before the work folder's note is written. Blocking.
    pub(super) fn upload_note(
        &self,
        publisher: &PublicKey,
        note: &crate::note::VerifiedNote,
    ) -> Result<(), StoreError> {
        let Some(sink) = self.bucket.get() else {
            return Ok(());
        };
        let authority = self
            .chain(publisher)?
            .authority(std::time::SystemTime::now());
        sink.runtime
            .block_on(upload::publish_note(
                &sink.bucket,
                publisher,
                &authority,
                note,
            ))
            .map_err(StoreError::Bucket)?;
        Ok(())
    }

    fn publication(
        &self,
        publisher: &PublicKey,
        index: Arc<Index>,
    ) -> Result<Publication, StoreError> {
        let chain = self.chain(publisher)?;
        let authority = chain.authority(std::time::SystemTime::now());
        // The note this store serves, verified when installed; one that has since expired is
        // not uploaded (readers would refuse it), and is no reason to hold the index back.
        let note = upload::folder_note(&self.root, publisher, &authority).unwrap_or_else(|e| {
            tracing::debug!("not uploading the held note: {e}");
            None
        });
        Ok(Publication {
            publisher: publisher.clone(),
            index,
            note,
            authority,
            signers: chain.every_signer(),
            roots: chain.roots().to_vec(),
            keep: self.keep,
            source: self.root.clone(),
        })
    }
}
