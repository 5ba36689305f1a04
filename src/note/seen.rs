//! The newest note accepted per publisher: the rollback rule for notes.
//!
//! Owns one file per publisher holding the URI of the newest note accepted (a reader's
//! `<state>/notes/<pubkey-hex>.note`, a mirror's served `qasid/v1/publishers/<pubkey-hex>/note`),
//! replaced atomically. A note older (lower sequence) than the held one is refused; an equal
//! sequence keeps the held note, so two notes of one sequence cannot make the file flap. The
//! held file is re-verified whenever it is read: trust never comes from the disk.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::{NoteError, SignedNote, VerifiedNote};
use crate::index::atomic;
use crate::keys::{PublicKey, Trusted};
use crate::limits::MAX_NOTE_TEXT_BYTES;

/// What storing a newly verified note did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// It is newer than the held note (or the first): now held.
    Replaced,
    /// The same note was already held.
    Unchanged,
    /// A different note with the same sequence was already held and is kept.
    KeptHeld,
}

/// Where a reader keeps the newest note of `publisher` under its state folder.
pub fn reader_path(state: &Path, publisher: &PublicKey) -> PathBuf {
    state
        .join("notes")
        .join(format!("{}.note", publisher.hex()))
}

/// The note held at `path`, re-verified with `publisher` (a key, or an authority whose note
/// signers count; expired notes included: the sequence still counts); `None` if there is none.
pub fn held<T: Trusted>(path: &Path, publisher: &T) -> Result<Option<VerifiedNote>, NoteError> {
    let state_error = |reason: String| NoteError::State {
        path: path.to_owned(),
        reason,
    };
    let mut text = String::new();
    match std::fs::File::open(path) {
        Ok(f) => f
            .take(MAX_NOTE_TEXT_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| state_error(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_error(e.to_string())),
    };
    SignedNote::from_uri(&text)
        .and_then(|s| s.verify(std::slice::from_ref(publisher)))
        .map(Some)
        .map_err(|e| state_error(format!("the held note does not verify: {e}")))
}

/// The rollback rule: `Err` for a note older than `held`, `Some` when `held` stays (the same
/// sequence), `None` when `note` is newer and replaces it.
pub fn against_held(held: &VerifiedNote, note: &VerifiedNote) -> Result<Option<Stored>, NoteError> {
    let (held_seq, offered) = (held.note().sequence, note.note().sequence);
    if offered < held_seq {
        return Err(NoteError::Rollback {
            publisher: note.publisher().id(),
            held: held_seq,
            offered,
        });
    }
    Ok((offered == held_seq).then(|| {
        if held.signed() == note.signed() {
            Stored::Unchanged
        } else {
            Stored::KeptHeld
        }
    }))
}

/// Stores `note` at `path` (temp file in `tmp_dir`) unless it is older than the held one,
/// which is refused as a rollback. The held note is re-verified with `publisher`.
pub fn store<T: Trusted>(
    tmp_dir: &Path,
    path: &Path,
    publisher: &T,
    note: &VerifiedNote,
) -> Result<Stored, NoteError> {
    if let Some(held) = held(path, publisher)? {
        if let Some(kept) = against_held(&held, note)? {
            return Ok(kept);
        }
    }
    let io = |e: std::io::Error| NoteError::State {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::create_dir_all(tmp_dir).map_err(io)?;
    let text = format!("{}\n", note.signed().to_uri());
    atomic::write(tmp_dir, path, text.as_bytes()).map_err(io)?;
    Ok(Stored::Replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::note::{Note, NoteMirror};

    fn signed(key: &SecretKey, sequence: u64, url: &str) -> VerifiedNote {
        Note {
            publisher: key.public().id(),
            sequence,
            expires: 4_000_000_000,
            mirrors: vec![NoteMirror::parse(url).unwrap()],
        }
        .sign(key)
        .unwrap()
        .verify(std::slice::from_ref(key.public()))
        .unwrap()
    }

    #[test]
    fn older_notes_are_refused_after_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        let path = reader_path(dir.path(), key.public());
        let s = |seq, url| store(dir.path(), &path, key.public(), &signed(&key, seq, url));
        assert_eq!(s(5, "https://a.example/").unwrap(), Stored::Replaced);
        assert_eq!(s(5, "https://a.example/").unwrap(), Stored::Unchanged);
        assert_eq!(s(5, "https://b.example/").unwrap(), Stored::KeptHeld);
        assert!(matches!(
            s(4, "https://c.example/"),
            Err(NoteError::Rollback {
                held: 5,
                offered: 4,
                ..
            })
        ));
        assert_eq!(s(6, "https://c.example/").unwrap(), Stored::Replaced);
        let held = held(&path, key.public()).unwrap().unwrap();
        assert_eq!(held.note().sequence, 6);
    }

    #[test]
    fn a_tampered_state_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[8; 32]);
        let path = reader_path(dir.path(), key.public());
        store(
            dir.path(),
            &path,
            key.public(),
            &signed(&key, 9, "https://a.example/"),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace('A', "B")).unwrap();
        assert!(matches!(
            store(
                dir.path(),
                &path,
                key.public(),
                &signed(&key, 1, "https://a.example/")
            ),
            Err(NoteError::State { .. })
        ));
    }
}
