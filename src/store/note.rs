//! The publisher's mirror note in the store (`qasid/v1/publishers/<id>/note`, PROTOCOL.md
//! §12), pushed by the publisher or fetched by a sync.
//!
//! A note is stored only after it verified with a key the publisher's current root delegates
//! for notes (the publisher key without roots), unexpired, and no older than the held note: a
//! lower sequence is refused as a rollback; the same sequence keeps the held note, so two
//! notes of one sequence cannot make the file flap. The held note is re-verified before it is
//! compared; one that no longer verifies (its key was revoked, the file was damaged) is
//! replaced. The file holds the URI and a newline, replaced atomically.

use std::time::SystemTime;

use super::{Installed, ObjectKind, PublisherId, Store, StoreError};
use crate::index::atomic;
use crate::keys::PublicKey;
use crate::limits::MAX_NOTE_TEXT_BYTES;
use crate::note::{seen, NoteError, SignedNote, VerifiedNote};

impl Store {
    /// Verifies `bytes` (the text of one note URI, at most [`MAX_NOTE_TEXT_BYTES`]) as a note
    /// of `publisher` and installs it unless the held note is as new or newer.
    pub fn install_note(
        &self,
        publisher: &PublicKey,
        bytes: &[u8],
        now: SystemTime,
    ) -> Result<Installed, StoreError> {
        let authority = self.authority(publisher)?;
        let note = verify_note_text(bytes, &authority, now).map_err(StoreError::Note)?;
        self.ensure_publisher(publisher)?;
        // Serialises note installs with index and root installs of this store.
        let _guard = self.lock_publishers();
        let path = self.path(&PublisherId::of(publisher), &ObjectKind::Note);
        // A held note that no longer verifies gives no rollback protection worth keeping.
        if let Ok(Some(held)) = seen::held(&path, &authority) {
            if seen::against_held(&held, &note)
                .map_err(StoreError::Note)?
                .is_some()
            {
                return Ok(Installed::AlreadyPresent);
            }
        }
        // Into the bucket first (a bucket store), so the store never serves a note the
        // bucket lacks.
        self.upload_note(publisher, &note)?;
        let text = format!("{}\n", note.signed().to_uri());
        atomic::write(self.tmp_dir(), &path, text.as_bytes()).map_err(StoreError::io(&path))?;
        Ok(Installed::New)
    }
}

/// Parses and verifies the text of a `note` file: one URI, UTF-8, within the size cap,
/// signed by a note signer of `authority`, unexpired at `now`.
pub(crate) fn verify_note_text(
    bytes: &[u8],
    authority: &crate::roots::Authority,
    now: SystemTime,
) -> Result<VerifiedNote, NoteError> {
    if bytes.len() as u64 > MAX_NOTE_TEXT_BYTES {
        return Err(NoteError::TooLarge {
            limit: MAX_NOTE_TEXT_BYTES as usize,
        });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| NoteError::NotANote("the note file is not UTF-8".into()))?;
    let note = SignedNote::from_uri(text)?.verify(std::slice::from_ref(authority))?;
    note.check_fresh(now)?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::note::{Note, NoteMirror};

    fn uri(key: &SecretKey, sequence: u64, url: &str) -> String {
        Note {
            publisher: key.public().id(),
            sequence,
            expires: 4_000_000_000,
            mirrors: vec![NoteMirror::parse(url).unwrap()],
        }
        .sign(key)
        .unwrap()
        .to_uri()
    }

    #[test]
    fn a_forged_or_older_note_is_refused_and_the_held_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), super::super::Keep::All, Default::default()).unwrap();
        let key = SecretKey::from_seed(&[3; 32]);
        let thief = SecretKey::from_seed(&[4; 32]);
        let now = SystemTime::now();
        let put = |k: &SecretKey, seq, url| {
            store.install_note(key.public(), uri(k, seq, url).as_bytes(), now)
        };
        assert_eq!(put(&key, 10, "https://a.example/").unwrap(), Installed::New);
        assert!(matches!(
            put(&thief, 11, "https://evil.example/"),
            Err(StoreError::Note(NoteError::UnknownPublisher(_)))
        ));
        assert!(matches!(
            put(&key, 9, "https://old.example/"),
            Err(StoreError::Note(NoteError::Rollback {
                held: 10,
                offered: 9,
                ..
            }))
        ));
        assert_eq!(
            put(&key, 10, "https://b.example/").unwrap(),
            Installed::AlreadyPresent
        );
        let path = store.path(&PublisherId::of(key.public()), &ObjectKind::Note);
        let held = std::fs::read_to_string(&path).unwrap();
        assert_eq!(held.trim(), uri(&key, 10, "https://a.example/"));
        assert_eq!(put(&key, 12, "https://c.example/").unwrap(), Installed::New);
    }
}
