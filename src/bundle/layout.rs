//! The byte-level facts of the bundle zip layout, shared by the writer and the strict reader.
//!
//! Owns the constants both sides must agree on (entry names, header values, which files are
//! deflated) so that what qasid writes is exactly what it accepts. Never reads or writes
//! anything itself.

use crate::manifest::EntryName;

/// First entry: the manifest, stored.
pub const MANIFEST_ENTRY: &str = "manifest.json";
/// Second entry: 64 raw bytes of ed25519 signature over the manifest, stored.
pub const SIGNATURE_ENTRY: &str = "manifest.sig";
/// Prefix of the zip entry name of every manifest file.
pub const FILES_PREFIX: &str = "files/";
/// Length of `manifest.sig`.
pub const SIGNATURE_LEN: u64 = 64;

/// Zip compression method 0.
pub const METHOD_STORED: u16 = 0;
/// Zip compression method 8.
pub const METHOD_DEFLATE: u16 = 8;
/// Deflate level used for text-like files. Fixed: part of what makes bundles reproducible.
pub const DEFLATE_LEVEL: u32 = 6;

/// General purpose flag bit 11: the entry name is UTF-8. Set exactly for non-ASCII names.
pub const FLAG_UTF8: u16 = 1 << 11;
/// Highest "version needed to extract": 2.0 (deflate). Anything newer means zip64, encryption or
/// a compression method qasid never writes.
pub const MAX_VERSION_NEEDED: u16 = 20;
/// DOS date 1980-01-01 (day 1, month 1, year 0 of 1980).
pub const DOS_DATE: u16 = 0x0021;
/// DOS time 00:00:00.
pub const DOS_TIME: u16 = 0;
/// Unix mode bits of a regular file.
pub const S_IFREG: u32 = 0o100000;
/// Mask of the unix file type bits.
pub const S_IFMT: u32 = 0o170000;
/// Unix symlink type.
pub const S_IFLNK: u32 = 0o120000;
/// Unix directory type.
pub const S_IFDIR: u32 = 0o040000;
/// Unix permissions of every entry: `rw-r--r--`.
pub const FILE_PERMISSIONS: u32 = 0o644;
/// External attributes of every entry: unix mode `-rw-r--r--` in the high 16 bits, no DOS
/// attributes. An all-zero value (no attributes) is also accepted when reading.
pub const EXTERNAL_ATTRIBUTES: u32 = (S_IFREG | FILE_PERMISSIONS) << 16;
/// MS-DOS directory attribute bit in the low byte of the external attributes.
pub const DOS_DIRECTORY: u32 = 0x10;
/// "Version made by" host system number for Unix.
pub const HOST_UNIX: u16 = 3;

/// Local file header signature `PK\x03\x04`.
pub const LOCAL_HEADER_SIG: u32 = 0x0403_4b50;
/// Central directory file header signature `PK\x01\x02`.
pub const CENTRAL_HEADER_SIG: u32 = 0x0201_4b50;
/// End of central directory signature `PK\x05\x06`.
pub const END_SIG: u32 = 0x0605_4b50;
/// Zip64 end of central directory record signature `PK\x06\x06`.
pub const ZIP64_END_SIG: u32 = 0x0606_4b50;
/// Zip64 end of central directory locator signature `PK\x06\x07`.
pub const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Size and offset value meaning "see the zip64 extra field".
pub const ZIP64_MARKER: u32 = u32::MAX;

/// Read and copy buffer size: large enough that per-call overhead vanishes next to sha256,
/// small enough that the bytes just copied in are still in the CPU's cache when they are
/// hashed (with 256 KiB, verifying a 1 GiB bundle took 1.4x as long as with 64 KiB).
pub const BUFFER_SIZE: usize = 64 * 1024;

/// Extensions (compared case-insensitively) of files that are deflated; all others are stored,
/// since images, audio and video are already compressed.
const TEXT_LIKE: &[&str] = &[
    "md", "txt", "html", "htm", "css", "svg", "json", "xml", "csv",
];

/// Whether a manifest file is deflated in the zip.
pub fn is_text_like(path: &EntryName) -> bool {
    let file_name = path.components().last().unwrap_or_default();
    file_name
        .rsplit_once('.')
        .is_some_and(|(_, ext)| TEXT_LIKE.iter().any(|t| t.eq_ignore_ascii_case(ext)))
}

/// The zip entry name of a manifest file.
pub fn file_entry_name(path: &EntryName) -> String {
    format!("{FILES_PREFIX}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::BundleLimits;

    #[test]
    fn text_like_by_extension() {
        let l = BundleLimits::default();
        let text = |s: &str| is_text_like(&EntryName::new(s, &l).unwrap());
        assert!(text("article.md") && text("a/b/STYLE.CSS") && text("data.json"));
        assert!(!text("photo.png") && !text("md") && !text("big.bin") && !text("x.md/y"));
    }
}
