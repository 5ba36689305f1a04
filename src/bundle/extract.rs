//! Extraction of a bundle into a folder that appears only once the whole bundle verified.
//!
//! Owns the all-or-nothing rule: files are written into a fresh temporary folder created beside
//! the destination (same file system, so the final rename is atomic), and that folder is renamed
//! to the destination only after verification succeeded; on any failure it is removed. Never
//! writes into an existing non-empty folder and never writes outside the temporary folder.

use std::fs::{self, File};
use std::path::Path;

use super::verify::{self, Output};
use super::{io_at, BundleError, VerifiedBundle};
use crate::keys::Trusted;
use crate::limits::BundleLimits;

pub(super) fn extract_verified(
    bundle: impl std::io::Read,
    publisher: &(impl Trusted + ?Sized),
    limits: &BundleLimits,
    out_dir: &Path,
) -> Result<VerifiedBundle, BundleError> {
    let exists = check_destination(out_dir)?;
    let parent = match out_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".qasid-extract-")
        .tempdir_in(parent)
        .map_err(io_at(parent))?;
    let verified = verify::verify(bundle, publisher, limits, &mut Output::Folder(temp.path()))?;
    if exists {
        // Still empty (checked again): remove it so the rename can take its place.
        check_destination(out_dir)?;
        fs::remove_dir(out_dir).map_err(io_at(out_dir))?;
    }
    fs::rename(temp.path(), out_dir).map_err(io_at(out_dir))?;
    // The folder now lives at `out_dir`: stop the guard from deleting whatever is at its old
    // name.
    let _ = temp.keep();
    // Best effort: persists the rename where directories can be synced (not on Windows).
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(verified)
}

/// `Ok(true)` if `out_dir` is an empty folder, `Ok(false)` if it does not exist; anything else
/// (a file, a symlink, a folder with contents) is refused.
fn check_destination(out_dir: &Path) -> Result<bool, BundleError> {
    match fs::symlink_metadata(out_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(out_dir)(e)),
        Ok(meta) if meta.is_dir() => {
            let mut entries = fs::read_dir(out_dir).map_err(io_at(out_dir))?;
            match entries.next() {
                None => Ok(true),
                Some(_) => Err(BundleError::OutputNotEmpty(out_dir.to_owned())),
            }
        }
        Ok(_) => Err(BundleError::OutputNotEmpty(out_dir.to_owned())),
    }
}
