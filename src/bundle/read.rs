//! The strict, sequential zip reader: local headers, entry data, central directory, end record.
//!
//! Owns the byte-level parsing of untrusted zip structures. Reads front to back from any `Read`
//! through one reusable buffer, never seeks, and accepts only the exact shapes in
//! `layout.rs`: anything else (prepended or interleaved data, extra fields, data descriptors,
//! zip64, encryption, comments, mismatching central records, trailing bytes) is an error. Never
//! reads past a bundle size limit and never hands out an entry's data beyond its declared sizes.
//! It knows nothing about manifests or signatures.

use std::io::{self, BufRead, Read};

use flate2::Crc;

use super::layout::*;
use super::BundleError;
use crate::manifest::{printable, EntryNameError};

/// How far into a file that does not start with a zip entry we look for one, to tell
/// "something was prepended to a bundle" from "this is not a bundle at all".
const PREPEND_SCAN_LIMIT: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    Eof,
    OverLimit,
    Failed,
}

/// The bundle byte stream: a buffer over the underlying reader that tracks the offset and
/// enforces the bundle size limit on every byte fetched.
pub(super) struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bundle offset of `buf[start]`.
    offset: u64,
    fetched: u64,
    limit: u64,
    state: State,
}

impl<R: Read> Source<R> {
    pub(super) fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            offset: 0,
            fetched: 0,
            limit,
            state: State::Reading,
        }
    }

    /// Offset of the next unread byte.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// The buffered bytes, refilled when empty; an empty slice at the end of the stream.
    fn fill(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end && self.state == State::Reading {
            let n = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.state = State::Failed;
                        return Err(e);
                    }
                }
            };
            self.fetched += n as u64;
            self.start = 0;
            self.end = n;
            if self.fetched > self.limit {
                self.state = State::OverLimit;
            } else if n == 0 {
                self.state = State::Eof;
            }
        }
        match self.state {
            State::OverLimit => Err(io::Error::other("bundle size limit exceeded")),
            _ => Ok(&self.buf[self.start..self.end]),
        }
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// The error to report for `e`, which surfaced while reading `context`: the source's own
    /// failure if it has one, else `otherwise`.
    fn blame(&self, e: io::Error, context: &'static str, otherwise: BundleError) -> BundleError {
        match self.state {
            State::OverLimit => BundleError::TooLarge { limit: self.limit },
            State::Failed => BundleError::Read(e),
            State::Eof => BundleError::Truncated {
                offset: self.offset,
                context,
            },
            State::Reading => otherwise,
        }
    }

    /// Buffered bytes for `context`; at the end of the stream, [`BundleError::Truncated`].
    fn fill_some(&mut self, context: &'static str) -> Result<&[u8], BundleError> {
        match self.fill() {
            Ok(bytes) if !bytes.is_empty() => {}
            Ok(_) => {
                return Err(BundleError::Truncated {
                    offset: self.offset,
                    context,
                })
            }
            Err(e) => return Err(self.blame(e, context, BundleError::NotAZip)),
        }
        Ok(&self.buf[self.start..self.end])
    }

    /// Reads as many bytes as are left, up to `out.len()`; returns how many.
    fn read_up_to(&mut self, out: &mut [u8], context: &'static str) -> Result<usize, BundleError> {
        let mut filled = 0;
        while filled < out.len() {
            let available = match self.fill() {
                Ok(bytes) => bytes,
                Err(e) => return Err(self.blame(e, context, BundleError::NotAZip)),
            };
            if available.is_empty() {
                break;
            }
            let n = available.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&available[..n]);
            self.consume(n);
            filled += n;
        }
        Ok(filled)
    }

    fn read_exact(&mut self, out: &mut [u8], context: &'static str) -> Result<(), BundleError> {
        if self.read_up_to(out, context)? < out.len() {
            return Err(BundleError::Truncated {
                offset: self.offset,
                context,
            });
        }
        Ok(())
    }

    fn read_u32(&mut self, context: &'static str) -> Result<u32, BundleError> {
        let mut bytes = [0; 4];
        self.read_exact(&mut bytes, context)?;
        Ok(u32::from_le_bytes(bytes))
    }

    /// Consumes the rest of the stream and returns its length.
    pub(super) fn count_rest(&mut self) -> Result<u64, BundleError> {
        let mut count = 0;
        loop {
            let n = match self.fill() {
                Ok(bytes) => bytes.len(),
                Err(e) => return Err(self.blame(e, "trailing data", BundleError::NotAZip)),
            };
            if n == 0 {
                return Ok(count);
            }
            self.consume(n);
            count += n as u64;
        }
    }
}

/// Little-endian field reader over a fixed header.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u16(&mut self) -> u16 {
        let (head, rest) = self.0.split_at(2);
        self.0 = rest;
        u16::from_le_bytes([head[0], head[1]])
    }

    fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_le_bytes([head[0], head[1], head[2], head[3]])
    }
}

/// A local file header that passed every structural check.
#[derive(Debug)]
pub(super) struct LocalHeader {
    /// Bundle offset of the header's signature.
    pub(super) offset: u64,
    pub(super) version_needed: u16,
    pub(super) flags: u16,
    pub(super) method: u16,
    pub(super) crc32: u32,
    pub(super) compressed_size: u64,
    pub(super) size: u64,
    pub(super) name: String,
}

impl LocalHeader {
    /// The entry name, safe to show.
    pub(super) fn display(&self) -> String {
        printable(self.name.as_bytes())
    }
}

/// What follows an entry's data.
pub(super) enum Next {
    Entry(LocalHeader),
    CentralDirectory,
}

/// Reads the first local header, which must start at offset 0.
pub(super) fn first_entry<R: Read>(
    src: &mut Source<R>,
    max_name: usize,
) -> Result<LocalHeader, BundleError> {
    const CONTEXT: &str = "the first local header";
    let mut sig = [0u8; 4];
    let got = src.read_up_to(&mut sig, CONTEXT)?;
    let expected = LOCAL_HEADER_SIG.to_le_bytes();
    match got {
        0 => return Err(BundleError::Empty),
        1..=3 if sig[..got] == expected[..got] => {
            return Err(BundleError::Truncated {
                offset: src.offset(),
                context: CONTEXT,
            })
        }
        1..=3 => return Err(BundleError::NotAZip),
        _ => {}
    }
    match u32::from_le_bytes(sig) {
        LOCAL_HEADER_SIG => read_local_header(src, 0, max_name),
        CENTRAL_HEADER_SIG | END_SIG => Err(BundleError::MissingManifest {
            found: "a zip without entries".to_owned(),
        }),
        first => match scan_for_entry(src, first)? {
            Some(offset) => Err(BundleError::DataBeforeFirstEntry(offset)),
            None => Err(BundleError::NotAZip),
        },
    }
}

/// Looks for a local header signature in the first [`PREPEND_SCAN_LIMIT`] bytes; `window` holds
/// the four bytes already read. Returns the signature's offset.
fn scan_for_entry<R: Read>(
    src: &mut Source<R>,
    mut window: u32,
) -> Result<Option<u64>, BundleError> {
    while src.offset() < PREPEND_SCAN_LIMIT {
        let mut byte = [0u8; 1];
        if src.read_up_to(&mut byte, "leading data")? == 0 {
            return Ok(None);
        }
        window = (window >> 8) | (u32::from(byte[0]) << 24);
        if window == LOCAL_HEADER_SIG {
            return Ok(Some(src.offset() - 4));
        }
    }
    Ok(None)
}

/// Reads the signature after an entry: another local header or the central directory.
pub(super) fn next_entry<R: Read>(
    src: &mut Source<R>,
    max_name: usize,
) -> Result<Next, BundleError> {
    let offset = src.offset();
    match src.read_u32("the next header")? {
        LOCAL_HEADER_SIG => Ok(Next::Entry(read_local_header(src, offset, max_name)?)),
        CENTRAL_HEADER_SIG => Ok(Next::CentralDirectory),
        _ => Err(BundleError::DataBetweenEntries(offset)),
    }
}

/// Parses a local header whose signature (at `offset`) was just read.
fn read_local_header<R: Read>(
    src: &mut Source<R>,
    offset: u64,
    max_name: usize,
) -> Result<LocalHeader, BundleError> {
    let mut raw = [0u8; 26];
    src.read_exact(&mut raw, "a local file header")?;
    let mut f = Fields(&raw);
    let version_needed = f.u16();
    let flags = f.u16();
    let method = f.u16();
    let time = f.u16();
    let date = f.u16();
    let crc32 = f.u32();
    let compressed_size = f.u32();
    let size = f.u32();
    let name_len = usize::from(f.u16());
    let extra_len = f.u16();

    let name = read_name(src, name_len, max_name)?;
    let entry = printable(&name);
    if flags & 1 != 0 {
        return Err(BundleError::Encrypted { entry });
    }
    if flags & (1 << 3) != 0 {
        return Err(BundleError::DataDescriptor { entry });
    }
    if flags & !FLAG_UTF8 != 0 {
        return Err(BundleError::Flags { entry, flags });
    }
    if version_needed > MAX_VERSION_NEEDED {
        return Err(BundleError::Version {
            entry,
            version: version_needed,
        });
    }
    if compressed_size == ZIP64_MARKER || size == ZIP64_MARKER {
        return Err(BundleError::Zip64Entry { entry });
    }
    if extra_len != 0 {
        return Err(BundleError::ExtraField { entry });
    }
    if method != METHOD_STORED && method != METHOD_DEFLATE {
        return Err(BundleError::Method { entry, method });
    }
    if (time, date) != (DOS_TIME, DOS_DATE) {
        return Err(BundleError::Timestamp { entry });
    }
    let name = String::from_utf8(name).map_err(|_| BundleError::NameNotUtf8 {
        entry: entry.clone(),
    })?;
    if !name.is_ascii() && flags & FLAG_UTF8 == 0 {
        return Err(BundleError::NameNotMarkedUtf8 { entry });
    }
    if name.ends_with('/') {
        return Err(BundleError::Directory { entry });
    }
    if method == METHOD_STORED && compressed_size != size {
        return Err(BundleError::StoredSizeMismatch {
            entry,
            compressed: compressed_size.into(),
            size: size.into(),
        });
    }
    Ok(LocalHeader {
        offset,
        version_needed,
        flags,
        method,
        crc32,
        compressed_size: compressed_size.into(),
        size: size.into(),
        name,
    })
}

fn read_name<R: Read>(
    src: &mut Source<R>,
    len: usize,
    max_name: usize,
) -> Result<Vec<u8>, BundleError> {
    if len == 0 {
        return Err(BundleError::UnsafeEntryName {
            entry: String::new(),
            reason: EntryNameError::Empty,
        });
    }
    if len > max_name {
        return Err(BundleError::NameTooLong(len));
    }
    let mut name = vec![0; len];
    src.read_exact(&mut name, "an entry name")?;
    Ok(name)
}

/// An entry's data, bounded by its compressed size; what the deflate decoder reads from.
struct EntryData<'a, R> {
    src: &'a mut Source<R>,
    remaining: u64,
}

impl<R: Read> Read for EntryData<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for EntryData<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let available = self.src.fill()?;
        let n = (available.len() as u64).min(self.remaining) as usize;
        Ok(&available[..n])
    }

    fn consume(&mut self, n: usize) {
        self.src.consume(n);
        self.remaining -= n as u64;
    }
}

/// Streams an entry's uncompressed bytes to `sink` in chunks, checking that the data is exactly
/// the declared size and crc32. Never produces more than `size + 1` bytes of a deflated entry.
/// `out` is the reusable decompression buffer.
pub(super) fn stream_entry<R: Read>(
    src: &mut Source<R>,
    header: &LocalHeader,
    out: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<(), BundleError>,
) -> Result<(), BundleError> {
    const CONTEXT: &str = "entry data";
    let mut crc = Crc::new();
    if header.method == METHOD_STORED {
        let mut remaining = header.size;
        while remaining > 0 {
            let available = src.fill_some(CONTEXT)?;
            let n = (available.len() as u64).min(remaining) as usize;
            let chunk = &available[..n];
            crc.update(chunk);
            sink(chunk)?;
            src.consume(n);
            remaining -= n as u64;
        }
    } else {
        let lie = || BundleError::SizeLie {
            entry: header.display(),
            declared: header.size,
        };
        let mut data = EntryData {
            src,
            remaining: header.compressed_size,
        };
        let mut decoder = flate2::bufread::DeflateDecoder::new(&mut data);
        let mut produced = 0u64;
        loop {
            let want = (header.size - produced + 1).min(out.len() as u64) as usize;
            let n = match decoder.read(&mut out[..want]) {
                Ok(n) => n,
                Err(e) => {
                    drop(decoder);
                    let detail = if data.remaining == 0 {
                        "stream ends early"
                    } else {
                        "invalid stream"
                    };
                    let corrupt = BundleError::CorruptDeflate {
                        entry: header.display(),
                        detail,
                    };
                    return Err(data.src.blame(e, CONTEXT, corrupt));
                }
            };
            if n == 0 {
                break;
            }
            produced += n as u64;
            if produced > header.size {
                return Err(lie());
            }
            crc.update(&out[..n]);
            sink(&out[..n])?;
        }
        if produced != header.size {
            return Err(lie());
        }
        drop(decoder);
        if data.remaining != 0 {
            return Err(BundleError::CorruptDeflate {
                entry: header.display(),
                detail: "data after the end of the stream",
            });
        }
    }
    if crc.sum() != header.crc32 {
        return Err(BundleError::CrcMismatch {
            entry: header.display(),
            expected: header.crc32,
            actual: crc.sum(),
        });
    }
    Ok(())
}

/// What follows a central directory record.
pub(super) enum NextCentral {
    Record,
    End,
}

/// Reads the signature after a central directory record.
pub(super) fn next_central<R: Read>(src: &mut Source<R>) -> Result<NextCentral, BundleError> {
    let offset = src.offset();
    match src.read_u32("the central directory")? {
        CENTRAL_HEADER_SIG => Ok(NextCentral::Record),
        END_SIG => Ok(NextCentral::End),
        ZIP64_END_SIG | ZIP64_LOCATOR_SIG => Err(BundleError::Zip64Directory),
        _ => Err(BundleError::DataBetweenEntries(offset)),
    }
}

/// Parses a central directory record (signature already read) and checks it is exactly the
/// record for `local`, describing a plain regular file.
pub(super) fn read_central_record<R: Read>(
    src: &mut Source<R>,
    local: &LocalHeader,
) -> Result<(), BundleError> {
    let mut raw = [0u8; 42];
    src.read_exact(&mut raw, "a central directory record")?;
    let mut f = Fields(&raw);
    let version_made_by = f.u16();
    let fields = [
        (
            "version needed",
            u32::from(f.u16()),
            u32::from(local.version_needed),
        ),
        ("flags", u32::from(f.u16()), u32::from(local.flags)),
        (
            "compression method",
            u32::from(f.u16()),
            u32::from(local.method),
        ),
        ("time", u32::from(f.u16()), u32::from(DOS_TIME)),
        ("date", u32::from(f.u16()), u32::from(DOS_DATE)),
        ("crc32", f.u32(), local.crc32),
        ("compressed size", f.u32(), local.compressed_size as u32),
        ("size", f.u32(), local.size as u32),
        ("name length", u32::from(f.u16()), local.name.len() as u32),
    ];
    let extra_len = f.u16();
    let comment_len = f.u16();
    let disk = f.u16();
    let internal_attributes = f.u16();
    let external_attributes = f.u32();
    let offset = f.u32();
    let entry = local.display();
    for (field, central, expected) in fields {
        if central != expected {
            return Err(BundleError::CentralMismatch { entry, field });
        }
    }
    if u64::from(offset) != local.offset {
        return Err(BundleError::CentralMismatch {
            entry,
            field: "offset",
        });
    }
    let mut name = vec![0; local.name.len()];
    src.read_exact(&mut name, "a central directory name")?;
    if name != local.name.as_bytes() {
        return Err(BundleError::CentralMismatch {
            entry,
            field: "name",
        });
    }
    if extra_len != 0 {
        return Err(BundleError::ExtraField { entry });
    }
    if comment_len != 0 {
        return Err(BundleError::EntryComment { entry });
    }
    if disk != 0 {
        return Err(BundleError::CentralField {
            entry,
            field: "disk number",
            value: disk.into(),
        });
    }
    if internal_attributes != 0 {
        return Err(BundleError::CentralField {
            entry,
            field: "internal attributes",
            value: internal_attributes.into(),
        });
    }
    check_external_attributes(entry, version_made_by, external_attributes)
}

/// Only plain files: no attributes at all, or exactly unix `-rw-r--r--` from a unix host.
fn check_external_attributes(
    entry: String,
    version_made_by: u16,
    attributes: u32,
) -> Result<(), BundleError> {
    if attributes == 0 {
        return Ok(());
    }
    let mode = attributes >> 16;
    match mode & S_IFMT {
        S_IFLNK => return Err(BundleError::Symlink { entry }),
        S_IFDIR => return Err(BundleError::Directory { entry }),
        S_IFREG | 0 => {}
        _ => return Err(BundleError::SpecialFile { entry }),
    }
    if attributes & DOS_DIRECTORY != 0 {
        return Err(BundleError::Directory { entry });
    }
    if attributes != EXTERNAL_ATTRIBUTES {
        return Err(BundleError::Attributes { entry, attributes });
    }
    if version_made_by >> 8 != HOST_UNIX {
        return Err(BundleError::CentralField {
            entry,
            field: "host system",
            value: (version_made_by >> 8).into(),
        });
    }
    Ok(())
}

/// Parses the end of central directory record (signature already read) and checks it against
/// what was read: `entries` records from `directory_start` to `directory_end`, no comment.
pub(super) fn read_end_record<R: Read>(
    src: &mut Source<R>,
    entries: u64,
    directory_start: u64,
    directory_end: u64,
) -> Result<(), BundleError> {
    let mut raw = [0u8; 18];
    src.read_exact(&mut raw, "the end of central directory record")?;
    let mut f = Fields(&raw);
    let disk = f.u16();
    let directory_disk = f.u16();
    let disk_entries = f.u16();
    let total_entries = f.u16();
    let directory_size = f.u32();
    let directory_offset = f.u32();
    let comment_len = f.u16();
    if disk_entries == u16::MAX
        || total_entries == u16::MAX
        || directory_size == ZIP64_MARKER
        || directory_offset == ZIP64_MARKER
    {
        return Err(BundleError::Zip64Directory);
    }
    if disk != 0 || directory_disk != 0 {
        return Err(BundleError::EndRecord("disk number"));
    }
    if u64::from(disk_entries) != entries || u64::from(total_entries) != entries {
        return Err(BundleError::EndRecord("entry count"));
    }
    if u64::from(directory_size) != directory_end - directory_start {
        return Err(BundleError::EndRecord("central directory size"));
    }
    if u64::from(directory_offset) != directory_start {
        return Err(BundleError::EndRecord("central directory offset"));
    }
    if comment_len != 0 {
        return Err(BundleError::Comment);
    }
    Ok(())
}
