//! The known-mirrors file: mirror URLs learned from publishers' signed indexes, tried in later
//! runs after the mirrors the user gave.
//!
//! Owns `<state>/known-mirrors.txt` (one URL per line, `#` comments, newest first, at most
//! [`MAX_KNOWN_MIRRORS`], no duplicates), replaced atomically. Only URLs taken from a verified
//! head (already normalised [`MirrorUrl`]s) are ever written; a line that does not parse when
//! read back is skipped. Trust never comes from this file: it only says where to ask.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use crate::index::{atomic, MirrorUrl};
use crate::limits::IndexLimits;

/// Most mirrors remembered. 64, the most one signed head may list: the newest head's list
/// always fits whole, and older ones fill what is left.
pub const MAX_KNOWN_MIRRORS: usize = 64;

const FILE: &str = "known-mirrors.txt";

/// Largest file read back: 64 URLs of at most 2 KiB, and comments.
const MAX_FILE_BYTES: u64 = 256 << 10;

pub(super) fn path(state: &Path) -> PathBuf {
    state.join(FILE)
}

/// The remembered mirrors, newest first (none if the file does not exist).
pub(super) fn load(state: &Path, limits: &IndexLimits) -> io::Result<Vec<MirrorUrl>> {
    let mut text = String::new();
    match std::fs::File::open(path(state)) {
        Ok(f) => f.take(MAX_FILE_BYTES).read_to_string(&mut text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut urls: Vec<MirrorUrl> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Ok(url) = MirrorUrl::parse(line, limits) {
            if !urls.contains(&url) && urls.len() < MAX_KNOWN_MIRRORS {
                urls.push(url);
            }
        }
    }
    Ok(urls)
}

/// Puts `learned` (from the newest signed heads) first, keeps the older entries after them,
/// and drops the oldest beyond the cap. Writes only if something changed.
pub(super) fn remember(
    state: &Path,
    learned: &[MirrorUrl],
    limits: &IndexLimits,
) -> io::Result<()> {
    let old = load(state, limits)?;
    let mut merged: Vec<MirrorUrl> = Vec::new();
    for url in learned.iter().chain(&old) {
        if !merged.contains(url) && merged.len() < MAX_KNOWN_MIRRORS {
            merged.push(url.clone());
        }
    }
    if merged == old {
        return Ok(());
    }
    let mut text = String::from(
        "# Mirrors learned from publishers' signed indexes by `qasid fetch`, newest first.\n\
         # Tried after the mirrors given with --mirror or in the config. Safe to edit or delete.\n",
    );
    for url in &merged {
        text.push_str(url.as_str());
        text.push('\n');
    }
    atomic::write(state, &path(state), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> MirrorUrl {
        MirrorUrl::parse(s, &IndexLimits::default()).unwrap()
    }

    #[test]
    fn newest_first_deduplicated_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let l = IndexLimits::default();
        assert!(load(dir.path(), &l).unwrap().is_empty());
        remember(
            dir.path(),
            &[url("https://a.example/"), url("https://b.example/")],
            &l,
        )
        .unwrap();
        remember(
            dir.path(),
            &[url("https://c.example/"), url("https://a.example/")],
            &l,
        )
        .unwrap();
        let got: Vec<String> = load(dir.path(), &l)
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "https://c.example/",
                "https://a.example/",
                "https://b.example/"
            ]
        );
        let many: Vec<MirrorUrl> = (0..100)
            .map(|i| url(&format!("https://m{i}.example/")))
            .collect();
        remember(dir.path(), &many, &l).unwrap();
        let got = load(dir.path(), &l).unwrap();
        assert_eq!(got.len(), MAX_KNOWN_MIRRORS);
        assert_eq!(got[0], many[0]);
    }

    #[test]
    fn junk_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            path(dir.path()),
            "# comment\n\nftp://x.example/\nnot a url\nhttps://ok.example\n",
        )
        .unwrap();
        let got = load(dir.path(), &IndexLimits::default()).unwrap();
        assert_eq!(got, [url("https://ok.example/")]);
    }
}
