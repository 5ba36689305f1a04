//! Deciding a publish's new log entries and laying the log out in pieces.
//!
//! Owns the publisher-side rules (idempotent adds, no version conflicts or downgrades,
//! retracting only listed names) and the application of the merge rule: old pieces before the
//! merge point are reused untouched, only the merged tail is encoded again. It never writes
//! files and never reads bundles.

use std::collections::{HashMap, HashSet};

use crate::content_id::ContentId;
use crate::index::{
    current_positions, encode_piece_refs, merged_counts, ArticleVersion, EncodedPiece, Entry,
    PieceRef,
};
use crate::keys::PublicKey;
use crate::repo::{BundleStatus, RepoError};

/// The entries one publish appends, checked against the log so far.
pub(crate) struct NewEntries {
    /// Listed names and the bundle of their current version.
    listed: HashMap<String, ContentId>,
    /// Every `name@version` ever added, with its bundle.
    published: HashMap<(String, u64), ContentId>,
    highest: HashMap<String, u64>,
    bundles: HashSet<ContentId>,
    new: Vec<Entry>,
}

impl NewEntries {
    pub fn new(log: &[Entry]) -> Self {
        let mut plan = Self {
            listed: HashMap::new(),
            published: HashMap::new(),
            highest: HashMap::new(),
            bundles: HashSet::new(),
            new: Vec::new(),
        };
        for entry in log {
            if let Entry::Add(a) = entry {
                plan.record(a);
            }
        }
        for (name, pos) in current_positions(log) {
            if let Entry::Add(a) = &log[pos] {
                plan.listed.insert(name.to_owned(), a.bundle().sha256);
            }
        }
        plan
    }

    fn record(&mut self, a: &ArticleVersion) {
        let sha = a.bundle().sha256;
        self.published
            .insert((a.name().to_owned(), a.version()), sha);
        let highest = self.highest.entry(a.name().to_owned()).or_default();
        *highest = (*highest).max(a.version());
        self.bundles.insert(sha);
    }

    /// Appends an add unless the same bundle is already listed under its name. A bundle whose
    /// name was retracted is listed again.
    pub fn add(&mut self, article: ArticleVersion) -> Result<BundleStatus, RepoError> {
        let sha = article.bundle().sha256;
        let name = article.name().to_owned();
        if self.bundles.contains(&sha) {
            if self.listed.contains_key(&name) {
                return Ok(BundleStatus::AlreadyPublished);
            }
        } else {
            if let Some(existing) = self.published.get(&(name.clone(), article.version())) {
                return Err(RepoError::VersionConflict {
                    name,
                    version: article.version(),
                    existing: *existing,
                });
            }
            if let Some(&latest) = self.highest.get(&name) {
                if article.version() < latest {
                    return Err(RepoError::OlderVersion {
                        name,
                        version: article.version(),
                        latest,
                    });
                }
            }
        }
        self.record(&article);
        self.listed.insert(name, sha);
        self.new.push(Entry::Add(article));
        Ok(BundleStatus::Added)
    }

    /// Appends a retract for a listed name.
    pub fn retract(&mut self, name: &str) -> Result<(), RepoError> {
        if self.listed.remove(name).is_none() {
            return Err(RepoError::NotListed {
                name: name.to_owned(),
            });
        }
        self.new
            .push(Entry::retract(name).map_err(|_| RepoError::NotListed {
                name: name.to_owned(),
            })?);
        Ok(())
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.new
    }
}

/// The log's pieces after a publish, and the pieces that must be written for it.
pub(crate) struct Merged {
    pub pieces: Vec<PieceRef>,
    /// Newly encoded pieces (merges); the batch piece is not repeated here.
    pub new_pieces: Vec<EncodedPiece>,
}

/// Applies the merge rule to `old_pieces` plus the batch. Pieces before the first merged one
/// are kept as they are; each merged piece is encoded from the entries it covers.
pub(crate) fn merge(
    publisher: &PublicKey,
    old_entries: &[Entry],
    old_pieces: &[PieceRef],
    new_entries: &[Entry],
    batch: &EncodedPiece,
) -> Merged {
    let old_counts: Vec<u64> = old_pieces.iter().map(|p| p.count).collect();
    let counts = merged_counts(&old_counts, new_entries.len() as u64);
    // A merged piece always holds more than the old piece it starts at, so the first count
    // that differs is exactly where merging began.
    let kept = counts
        .iter()
        .zip(&old_counts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut pieces = old_pieces[..kept].to_vec();
    let mut new_pieces = Vec::new();
    let mut first = pieces.last().map_or(0, PieceRef::end);
    let entry = |pos: u64| {
        let pos = pos as usize;
        old_entries
            .get(pos)
            .unwrap_or_else(|| &new_entries[pos - old_entries.len()])
    };
    for &count in &counts[kept..] {
        if first == batch.reference.first && count == batch.reference.count {
            pieces.push(batch.reference);
        } else {
            let refs: Vec<&Entry> = (first..first + count).map(entry).collect();
            let bytes = encode_piece_refs(publisher, first, &refs);
            let piece = EncodedPiece::from_bytes(bytes, first, count);
            pieces.push(piece.reference);
            new_pieces.push(piece);
        }
        first += count;
    }
    Merged { pieces, new_pieces }
}
