//! Chunk lists: the sha256 of every fixed-size chunk of a large bundle, so a reader can check
//! each chunk as it arrives from whichever mirror sent it (docs/PROTOCOL.md §13).
//!
//! Owns the one encoding (`bundle sha256 ‖ sha256(chunk 0) ‖ … ‖ sha256(chunk n-1)`, chunks of
//! [`CHUNK_SIZE`] bytes, the last one shorter), the rule for which bundles have one, and the
//! checks of a list against its entry and of chunks against a list. It never reads files or
//! the network: callers hand it bytes that already matched the sha256 and size a signed entry
//! gives for the list.

use sha2::{Digest, Sha256};

use crate::content_id::ContentId;
use crate::index::ObjectRef;
use crate::limits::{CHUNKED_BUNDLE_THRESHOLD, CHUNK_SIZE};

/// Bytes of one hash in a chunk list.
const HASH_BYTES: usize = 32;

/// Why a chunk list, or a chunk checked against one, was refused. `name()` is the stable name
/// the test vector (`tests/vectors/chunks-v1/expect.json`) uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The list is not 32 × (1 + chunk count) bytes for its bundle's size.
    #[error(
        "chunk list is {found} bytes, but a bundle of {bundle_size} bytes needs a list of \
         exactly {expected}"
    )]
    WrongSize {
        bundle_size: u64,
        expected: u64,
        found: u64,
    },
    /// The list names another bundle than the entry's: it belongs to another article.
    #[error("chunk list is for bundle {found}, not for this entry's bundle {expected}")]
    WrongBundle {
        expected: ContentId,
        found: ContentId,
    },
    /// A chunk's bytes do not hash to what the list says.
    #[error(
        "chunk {index} (bytes {offset}..{}) does not match the bundle's chunk list",
        offset + length
    )]
    ChunkMismatch {
        index: u64,
        offset: u64,
        length: u64,
    },
    /// The entry names another chunk list than the one its bundle's bytes give: the publisher
    /// signed a list of another bundle (or a wrong one), which would make readers blame
    /// honest mirrors for every chunk.
    #[error("the entry names chunk list {listed}, but its bundle's chunk list is {actual}")]
    ListMismatch {
        listed: ContentId,
        actual: ContentId,
    },
    /// The bundle is too small to have a chunk list (at most the threshold).
    #[error(
        "a bundle of {bundle_size} bytes has no chunk list (only bundles above {} bytes do)",
        CHUNKED_BUNDLE_THRESHOLD
    )]
    NotChunked { bundle_size: u64 },
}

impl ChunkError {
    /// The error's name in the test vector's `expect.json`.
    pub fn name(&self) -> &'static str {
        match self {
            ChunkError::WrongSize { .. } => "wrong_size",
            ChunkError::WrongBundle { .. } => "wrong_bundle",
            ChunkError::ChunkMismatch { .. } => "chunk_mismatch",
            ChunkError::ListMismatch { .. } => "list_mismatch",
            ChunkError::NotChunked { .. } => "not_chunked",
        }
    }
}

/// Whether a bundle of `size` bytes has a chunk list: only above the threshold. A publisher
/// writes one for every such bundle; readers accept such an entry without one (repos published
/// before chunk lists existed) and fetch it whole.
pub fn is_chunked(bundle_size: u64) -> bool {
    bundle_size > CHUNKED_BUNDLE_THRESHOLD
}

/// Number of chunks of a bundle of `bundle_size` bytes (the last one may be shorter).
pub fn chunk_count(bundle_size: u64) -> u64 {
    bundle_size.div_ceil(CHUNK_SIZE)
}

/// The exact size of the chunk list of a bundle of `bundle_size` bytes.
pub fn list_size(bundle_size: u64) -> u64 {
    HASH_BYTES as u64 * (1 + chunk_count(bundle_size))
}

/// Checks the `chunks` reference of an entry against its bundle reference without the list's
/// bytes: allowed only for a bundle above the threshold, and exactly [`list_size`] bytes.
pub fn check_reference(bundle: ObjectRef, chunks: ObjectRef) -> Result<(), ChunkError> {
    if !is_chunked(bundle.size) {
        return Err(ChunkError::NotChunked {
            bundle_size: bundle.size,
        });
    }
    let expected = list_size(bundle.size);
    if chunks.size != expected {
        return Err(ChunkError::WrongSize {
            bundle_size: bundle.size,
            expected,
            found: chunks.size,
        });
    }
    Ok(())
}

/// A parsed chunk list, bound to the bundle it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    bundle: ObjectRef,
    /// One sha256 per chunk, in order.
    hashes: Vec<[u8; HASH_BYTES]>,
}

impl ChunkList {
    /// Parses list bytes (already checked against the entry's `chunks` sha256 and size) for
    /// the entry's `bundle`: exactly [`list_size`] bytes, and the first 32 name that bundle.
    pub fn parse(bytes: &[u8], bundle: ObjectRef) -> Result<Self, ChunkError> {
        if !is_chunked(bundle.size) {
            return Err(ChunkError::NotChunked {
                bundle_size: bundle.size,
            });
        }
        let expected = list_size(bundle.size);
        if bytes.len() as u64 != expected {
            return Err(ChunkError::WrongSize {
                bundle_size: bundle.size,
                expected,
                found: bytes.len() as u64,
            });
        }
        let (named, rest) = bytes.split_at(HASH_BYTES);
        let named = ContentId::from_bytes(named.try_into().expect("split at 32"));
        if named != bundle.sha256 {
            return Err(ChunkError::WrongBundle {
                expected: bundle.sha256,
                found: named,
            });
        }
        let hashes = rest
            .chunks_exact(HASH_BYTES)
            .map(|h| h.try_into().expect("exact chunks of 32"))
            .collect();
        Ok(Self { bundle, hashes })
    }

    /// The bundle this list describes.
    pub fn bundle(&self) -> ObjectRef {
        self.bundle
    }

    /// Number of chunks.
    pub fn count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Byte offset and length of chunk `index` within the bundle.
    pub fn range(&self, index: u64) -> (u64, u64) {
        let offset = index * CHUNK_SIZE;
        (offset, CHUNK_SIZE.min(self.bundle.size - offset))
    }

    /// Checks chunk `index`'s bytes.
    pub fn check(&self, index: u64, bytes: &[u8]) -> Result<(), ChunkError> {
        let digest: [u8; HASH_BYTES] = Sha256::digest(bytes).into();
        self.check_digest(index, bytes.len() as u64, &digest)
    }

    /// Checks a chunk already hashed by the caller (while it streamed to disk).
    pub fn check_digest(
        &self,
        index: u64,
        length: u64,
        digest: &[u8; HASH_BYTES],
    ) -> Result<(), ChunkError> {
        let (offset, expected_length) = self.range(index);
        if length != expected_length || self.hashes.get(index as usize) != Some(digest) {
            return Err(ChunkError::ChunkMismatch {
                index,
                offset,
                length: expected_length,
            });
        }
        Ok(())
    }

    /// The canonical bytes of this list.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HASH_BYTES * (1 + self.hashes.len()));
        out.extend_from_slice(self.bundle.sha256.as_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }
}

/// Builds the chunk list of a bundle from its bytes, fed in any pieces (the publisher feeds it
/// while it copies and hashes the bundle; a mirror while it re-reads a stored bundle).
#[derive(Default)]
pub struct ChunkHasher {
    hashes: Vec<[u8; HASH_BYTES]>,
    current: Sha256,
    in_current: u64,
    total: u64,
}

impl ChunkHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = (CHUNK_SIZE - self.in_current) as usize;
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.current.update(now);
            self.in_current += now.len() as u64;
            self.total += now.len() as u64;
            if self.in_current == CHUNK_SIZE {
                self.hashes
                    .push(std::mem::take(&mut self.current).finalize().into());
                self.in_current = 0;
            }
            bytes = later;
        }
    }

    /// The list for the bundle whose sha256 is `bundle` (the bytes fed must be exactly that
    /// bundle; its size is what was fed). `None` for a bundle that has no chunk list.
    pub fn finish(mut self, bundle: ContentId) -> Option<ChunkList> {
        if !is_chunked(self.total) {
            return None;
        }
        if self.in_current > 0 {
            self.hashes.push(self.current.finalize().into());
        }
        Some(ChunkList {
            bundle: ObjectRef {
                sha256: bundle,
                size: self.total,
            },
            hashes: self.hashes,
        })
    }
}

/// Computes the chunk list of the bundle read from `reader` (whose reference is `bundle`):
/// `None` when the bytes read are not `bundle.size` long or the bundle has no chunk list.
pub fn list_of(
    bundle: ObjectRef,
    mut reader: impl std::io::Read,
) -> Result<Option<ChunkList>, std::io::Error> {
    let mut buf = vec![0u8; 64 << 10];
    let mut hasher = ChunkHasher::new();
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if hasher.total > bundle.size {
            break;
        }
    }
    Ok(hasher.finish(bundle.sha256).filter(|a| a.bundle == bundle))
}

/// The chunk list of the bundle read from `reader` (whose sha256 is `bundle.sha256`), checked
/// against `bytes` claimed to be its list: what a mirror does before it stores a pushed or
/// synced list. Reads the bundle once, in `CHUNK_SIZE`-bounded pieces.
pub fn verify_list_against(
    bytes: &[u8],
    bundle: ObjectRef,
    reader: impl std::io::Read,
) -> Result<Result<ChunkList, ChunkError>, std::io::Error> {
    let list = match ChunkList::parse(bytes, bundle) {
        Ok(list) => list,
        Err(e) => return Ok(Err(e)),
    };
    let Some(actual) = list_of(bundle, reader)? else {
        return Ok(Err(ChunkError::WrongSize {
            bundle_size: bundle.size,
            expected: list_size(bundle.size),
            found: bytes.len() as u64,
        }));
    };
    if let Some(index) =
        (0..list.count()).find(|&i| actual.hashes[i as usize] != list.hashes[i as usize])
    {
        let (offset, length) = list.range(index);
        return Ok(Err(ChunkError::ChunkMismatch {
            index,
            offset,
            length,
        }));
    }
    Ok(Ok(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_of(bytes: &[u8]) -> ObjectRef {
        ObjectRef {
            sha256: ContentId::of_bytes(bytes),
            size: bytes.len() as u64,
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sizes_follow_the_threshold_and_the_chunk_size() {
        assert!(!is_chunked(CHUNKED_BUNDLE_THRESHOLD));
        assert!(is_chunked(CHUNKED_BUNDLE_THRESHOLD + 1));
        assert_eq!(chunk_count(CHUNKED_BUNDLE_THRESHOLD + 1), 5);
        assert_eq!(list_size(CHUNKED_BUNDLE_THRESHOLD + 1), 32 * 6);
        assert_eq!(list_size(2 << 30), crate::limits::MAX_CHUNK_LIST_BYTES);
    }

    #[test]
    fn a_list_round_trips_byte_for_byte_and_checks_each_chunk() {
        let bytes = data((CHUNKED_BUNDLE_THRESHOLD + 1000) as usize);
        let bundle = bundle_of(&bytes);
        let mut hasher = ChunkHasher::new();
        for piece in bytes.chunks(7000) {
            hasher.update(piece);
        }
        let list = hasher.finish(bundle.sha256).unwrap();
        assert_eq!(list.count(), 5);
        let encoded = list.encode();
        assert_eq!(encoded.len() as u64, list_size(bundle.size));
        assert_eq!(&encoded[..32], bundle.sha256.as_bytes());
        let parsed = ChunkList::parse(&encoded, bundle).unwrap();
        assert_eq!(parsed, list);
        for i in 0..list.count() {
            let (offset, length) = list.range(i);
            let chunk = &bytes[offset as usize..(offset + length) as usize];
            parsed.check(i, chunk).unwrap();
        }
        assert_eq!(list.range(4), (4 * CHUNK_SIZE, 1000));
        let mut bad = bytes[..CHUNK_SIZE as usize].to_vec();
        bad[5] ^= 1;
        assert_eq!(
            parsed.check(0, &bad).unwrap_err(),
            ChunkError::ChunkMismatch {
                index: 0,
                offset: 0,
                length: CHUNK_SIZE
            }
        );
        assert!(verify_list_against(&encoded, bundle, &bytes[..])
            .unwrap()
            .is_ok());
        let mut tampered = bytes.clone();
        tampered[3 * CHUNK_SIZE as usize + 9] ^= 1;
        assert_eq!(
            verify_list_against(&encoded, bundle, &tampered[..])
                .unwrap()
                .unwrap_err()
                .name(),
            "chunk_mismatch"
        );
    }

    #[test]
    fn a_list_of_another_size_or_bundle_is_refused() {
        let bytes = data((CHUNKED_BUNDLE_THRESHOLD + 1) as usize);
        let bundle = bundle_of(&bytes);
        let mut hasher = ChunkHasher::new();
        hasher.update(&bytes);
        let encoded = hasher.finish(bundle.sha256).unwrap().encode();
        let short = &encoded[..encoded.len() - 32];
        assert_eq!(
            ChunkList::parse(short, bundle).unwrap_err().name(),
            "wrong_size"
        );
        let other = ObjectRef {
            sha256: ContentId::of_bytes(b"other"),
            ..bundle
        };
        assert_eq!(
            ChunkList::parse(&encoded, other).unwrap_err().name(),
            "wrong_bundle"
        );
        let small = ObjectRef {
            size: CHUNKED_BUNDLE_THRESHOLD,
            ..bundle
        };
        assert_eq!(
            ChunkList::parse(&encoded, small).unwrap_err().name(),
            "not_chunked"
        );
        let mut small_hasher = ChunkHasher::new();
        small_hasher.update(&bytes[..CHUNKED_BUNDLE_THRESHOLD as usize]);
        assert!(small_hasher.finish(bundle.sha256).is_none());
    }
}
