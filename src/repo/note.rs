//! The publisher's mirror note in its repo: `qasid/v1/publishers/<id>/note` (PROTOCOL.md §12),
//! one `qasid:1:` URI and a newline, signed from the index just published.
//!
//! The note's sequence is the index's `issued` time (Unix seconds), so a note made later wins
//! without any state; its mirrors are the index's signed mirror list (the first ones that fit a
//! note). The signing key must be one the publisher's current root delegates for notes (the
//! publisher key itself without roots): [`Repo::check_note_key`] says so before anything is
//! written. The file is replaced atomically; `push` and static hosts serve it as it is.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Repo, RepoError, PRIVATE_DIR};
use crate::index::Head;
use crate::keys::{PublicKey, Role, SecretKey, Trusted as _};
use crate::limits::MAX_NOTE_MIRRORS;
use crate::note::{Note, NoteError, NoteMirror, SignedNote};

impl Repo {
    /// Refuses `key` unless the publisher's current root delegates it the `note` role (or it
    /// is the one key of a publisher without roots).
    pub fn check_note_key(&self, key: &PublicKey, now: SystemTime) -> Result<(), RepoError> {
        let authority = self.chain()?.authority(now);
        if authority.signers(Role::Note).contains(key) {
            return Ok(());
        }
        Err(RepoError::NoNoteRole {
            key: key.id(),
            publisher: self.publisher.id(),
            root: authority.version(),
        })
    }

    /// Signs the note of `head` with `key`, valid until `expires`, and writes it into the
    /// layout atomically. The mirrors are the head's signed list in its order: the first 16,
    /// fewer when their URLs do not fit the note's byte limit.
    pub fn write_note(
        &self,
        key: &SecretKey,
        head: &Head,
        expires: SystemTime,
    ) -> Result<SignedNote, RepoError> {
        self.check_note_key(key.public(), head.issued())?;
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut mirrors = head
            .mirrors()
            .iter()
            .take(MAX_NOTE_MIRRORS)
            .map(|url| NoteMirror::parse(url.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        if mirrors.is_empty() {
            return Err(RepoError::NoMirrorsForNote);
        }
        let signed = loop {
            let note = Note {
                publisher: key.public().id(),
                sequence: seconds(head.issued()).max(1),
                expires: seconds(expires),
                mirrors: mirrors.clone(),
            };
            match note.sign(key) {
                Err(NoteError::Invalid(_)) if mirrors.len() > 1 => {
                    mirrors.pop();
                }
                other => break other?,
            }
        };
        let dest = self.path(&self.layout.note());
        let tmp = self.root.join(PRIVATE_DIR).join("tmp");
        let io = |source| RepoError::Io {
            path: dest.clone(),
            source,
        };
        std::fs::create_dir_all(&tmp).map_err(io)?;
        crate::index::atomic::write(&tmp, &dest, format!("{}\n", signed.to_uri()).as_bytes())
            .map_err(io)?;
        Ok(signed)
    }
}
