//! `ContentId`: the sha256 of an object's exact bytes, and the hashing reader that computes it.
//!
//! A `ContentId` is only ever parsed from exactly 64 lowercase hex digits or computed from bytes;
//! it is what bundles and index pieces are stored, named and checked by. This module never
//! decides whether a hash is trusted: it only computes and compares.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The sha256 of an object's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId([u8; 32]);

/// A string was not 64 lowercase hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a sha256: expected 64 lowercase hex digits")]
pub struct ParseContentIdError;

impl ContentId {
    /// Hashes a byte slice held in memory (small objects only: manifests, index pieces).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps a finished digest.
    pub fn from_digest(digest: Sha256) -> Self {
        Self(digest.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps 32 raw digest bytes read from a binary format (a chunk list).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn to_hex(&self) -> String {
        self.with_hex(str::to_owned)
    }

    /// Calls `f` with the 64 lowercase hex digits, spelled out on the stack (an index of
    /// 100,000 entries serialises that many ids when it is checked).
    fn with_hex<T>(&self, f: impl FnOnce(&str) -> T) -> T {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).expect("64 bytes hold 32 in hex");
        f(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
    }
}

impl FromStr for ContentId {
    type Err = ParseContentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Uppercase hex is refused so that one object has exactly one name (file, URL, ETag).
        fn digit(b: u8) -> Result<u8, ParseContentIdError> {
            match b {
                b'0'..=b'9' => Ok(b - b'0'),
                b'a'..=b'f' => Ok(b - b'a' + 10),
                _ => Err(ParseContentIdError),
            }
        }
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ParseContentIdError);
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_hex(|hex| f.write_str(hex))
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({})", self.to_hex())
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.with_hex(|hex| s.serialize_str(hex))
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so the string is read in place: an index of 100,000 entries holds that
        // many ids, and a `String` (or serde's `Cow`, which always owns) for each one costs.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ContentId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ContentId, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A reader that hashes and counts every byte passing through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash and length of everything read.
    pub fn finish(self) -> (ContentId, u64) {
        (ContentId::from_digest(self.hasher), self.count)
    }
}

/// A reader whose bytes are hashed on a second thread, for a caller that is itself busy hashing
/// what it reads (`verify` checks every entry's sha256 while the whole file's sha256 is wanted
/// too): on two cores the second hash then costs a copy, not a second pass. At most
/// [`ThreadedHashingReader::QUEUE`] chunks wait for the hashing thread, so memory stays bounded.
pub struct ThreadedHashingReader<R> {
    inner: R,
    count: u64,
    /// Bytes not yet handed to the thread: sent in chunks of [`Self::CHUNK`], not per read.
    pending: Vec<u8>,
    sender: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl<R: Read> ThreadedHashingReader<R> {
    /// Chunks queued for the hashing thread before reads wait for it.
    pub const QUEUE: usize = 8;
    /// Bytes per chunk handed to the hashing thread.
    pub const CHUNK: usize = 1 << 20;

    pub fn new(inner: R) -> Self {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<u8>>(Self::QUEUE);
        let worker = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in receiver {
                hasher.update(&chunk);
            }
            hasher
        });
        Self {
            inner,
            count: 0,
            pending: Vec::with_capacity(Self::CHUNK),
            sender: Some(sender),
            worker: Some(worker),
        }
    }

    /// The hash and length of everything read.
    pub fn finish(mut self) -> (ContentId, u64) {
        if let Some(sender) = self.sender.take() {
            // A closed channel means the thread is gone; join below reports that.
            let _ = sender.send(std::mem::take(&mut self.pending));
        }
        let hasher = self
            .worker
            .take()
            .expect("finish is called once")
            .join()
            .expect("the hashing thread does not panic");
        (ContentId::from_digest(hasher), self.count)
    }
}

impl<R: Read> Read for ThreadedHashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() >= Self::CHUNK {
            if let Some(sender) = &self.sender {
                let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(Self::CHUNK));
                sender
                    .send(chunk)
                    .map_err(|_| io::Error::other("the hashing thread stopped"))?;
            }
        }
        self.count += n as u64;
        Ok(n)
    }
}

impl<R> Drop for ThreadedHashingReader<R> {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threaded_reader_hashes_what_a_plain_one_does() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut plain = HashingReader::new(&data[..]);
        let mut threaded = ThreadedHashingReader::new(&data[..]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        plain.read_to_end(&mut a).unwrap();
        threaded.read_to_end(&mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(plain.finish(), threaded.finish());
    }

    #[test]
    fn known_vector_and_round_trip() {
        let id = ContentId::of_bytes(b"abc");
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_hex().parse::<ContentId>().unwrap(), id);
    }

    #[test]
    fn rejects_uppercase_short_and_non_hex() {
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert!(upper.parse::<ContentId>().is_err());
        assert!("ab".parse::<ContentId>().is_err());
        assert!("../".repeat(22)[..64].parse::<ContentId>().is_err());
    }

    #[test]
    fn hashing_reader_matches_of_bytes() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish(), (ContentId::of_bytes(&data), 100_000));
    }
}
