//! Where a publisher's files live under a repo root or mirror base URL (`qasid/v1/...`).
//!
//! Owns the mapping from validated values (a [`PublicKey`], a [`ContentId`]) to relative paths,
//! so no path or URL is ever built from an untrusted string. It never touches the file system.

use std::path::{Path, PathBuf};

use crate::content_id::ContentId;
use crate::keys::PublicKey;

/// The versioned prefix every qasid path starts with.
pub const PREFIX: &str = "qasid/v1";

/// One publisher's folder in the layout, named by the lowercase hex of the raw ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherLayout {
    /// `qasid/v1/publishers/<pubkey-hex>`, with `/` separators.
    base: String,
}

impl PublisherLayout {
    pub fn new(publisher: &PublicKey) -> Self {
        Self {
            base: format!("{PREFIX}/publishers/{}", publisher.hex()),
        }
    }

    /// `qasid/v1/publishers/<hex>`: the publisher's folder.
    pub fn dir(&self) -> &str {
        &self.base
    }

    /// The signed head envelope: the only file that ever changes.
    pub fn index(&self) -> String {
        format!("{}/index.json", self.base)
    }

    /// The publisher's minisign public key file (informational only).
    pub fn publisher_pub(&self) -> String {
        format!("{}/publisher.pub", self.base)
    }

    /// The publisher's signed mirror note, one `qasid:1:` URI (docs/PROTOCOL.md §12).
    pub fn note(&self) -> String {
        format!("{}/note", self.base)
    }

    /// The publisher's root documents, one immutable file per version (docs/PROTOCOL.md §11).
    pub fn roots_dir(&self) -> String {
        format!("{}/roots", self.base)
    }

    /// Root version `version` (1, 2, …).
    pub fn root(&self, version: u64) -> String {
        format!("{}/roots/{version}.json", self.base)
    }

    pub fn pieces_dir(&self) -> String {
        format!("{}/pieces", self.base)
    }

    /// An immutable index piece, named by the sha256 of its bytes.
    pub fn piece(&self, id: &ContentId) -> String {
        format!("{}/pieces/{id}.json", self.base)
    }

    pub fn bundles_dir(&self) -> String {
        format!("{}/bundles", self.base)
    }

    /// A bundle, named by the sha256 of the zip file.
    pub fn bundle(&self, id: &ContentId) -> String {
        format!("{}/bundles/{id}.zip", self.base)
    }

    pub fn chunks_dir(&self) -> String {
        format!("{}/chunks", self.base)
    }

    /// A bundle's chunk list (docs/PROTOCOL.md §13), named by the sha256 of the list's bytes.
    pub fn chunks(&self, id: &ContentId) -> String {
        format!("{}/chunks/{id}", self.base)
    }

    /// The bundle's detached minisign signature, for checks with stock minisign.
    pub fn minisig(&self, id: &ContentId) -> String {
        format!("{}/bundles/{id}.zip.minisig", self.base)
    }
}

/// Joins a layout path (always `/`-separated, never absolute, never `..`) onto a directory.
pub fn on_disk(root: &Path, relative: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(relative.split('/'));
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn paths_are_under_the_versioned_prefix() {
        let key = SecretKey::from_seed(&[9u8; 32]);
        let layout = PublisherLayout::new(key.public());
        let hex = key.public().hex();
        assert_eq!(
            layout.index(),
            format!("qasid/v1/publishers/{hex}/index.json")
        );
        let id = ContentId::of_bytes(b"x");
        assert_eq!(
            layout.minisig(&id),
            format!("qasid/v1/publishers/{hex}/bundles/{id}.zip.minisig")
        );
        assert_eq!(
            on_disk(Path::new("/r"), &layout.piece(&id)),
            Path::new(&format!("/r/qasid/v1/publishers/{hex}/pieces/{id}.json"))
        );
    }
}
