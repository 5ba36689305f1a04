//! `qasid verify`: check a bundle offline against a publisher key.

use std::path::PathBuf;

use clap::Args;
use qasid::bundle::{self, BundleError};
use qasid::content_id::ThreadedHashingReader;
use qasid::index::default_state_dir;
use qasid::limits::BundleLimits;

use super::{json, print_json, Failure};

/// Check that a bundle is authentic and whole, offline.
///
/// Exit 0 only if every file matches the manifest and the manifest is signed by PUBKEY;
/// exit 3 with one line naming the first problem otherwise. Nothing is extracted. Prints both
/// hashes: the bundle file's sha256 (what `sha256sum FILE` shows, and what the signed index and
/// the reader pages give) and the sha256 of the signed manifest.json inside it.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid verify launch.zip --publisher keys/publisher.pub\n  qasid verify launch.zip --publisher RWQ...base64... --json"
)]
pub struct VerifyArgs {
    /// The bundle to check.
    file: PathBuf,
    /// The publisher's public key: a publisher.pub file or its one-line base64 form.
    #[arg(long, value_name = "PUBKEY")]
    publisher: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    pub fn run(self) -> Result<(), Failure> {
        // The roots earlier fetches stored for this publisher say which keys sign its bundles.
        let state = default_state_dir();
        let chain = super::offline_chain(&self.publisher, state.as_deref())?;
        let authority = chain.authority(std::time::SystemTime::now());
        let publisher = chain.id().clone();
        let file = std::fs::File::open(&self.file).map_err(|source| BundleError::Io {
            path: self.file.clone(),
            source,
        })?;
        // One pass: the verifier reads the whole file (trailing bytes are an error), so the
        // hash of what it read is the hash of the file; hashed on a second thread, beside the
        // verifier's own hashing of every entry.
        let mut hashing = ThreadedHashingReader::new(file);
        let verified = bundle::verify_reader(&mut hashing, &authority, &BundleLimits::default())?;
        let (bundle_sha256, size) = hashing.finish();
        let m = verified.manifest();
        if self.json {
            print_json(&serde_json::json!({
                "name": m.name(),
                "version": m.version(),
                "title": m.title(),
                "author": m.author(),
                "date": m.created(),
                "language": m.language(),
                "publisher": json::publisher(&publisher),
                "sha256": bundle_sha256,
                "size": size,
                "manifest_sha256": verified.manifest_id(),
                "files": m.files().len(),
            }))
        } else {
            println!(
                "verified: {} (v{})",
                qasid::shown::line(m.title()),
                m.version()
            );
            println!("  name:      {}", m.name());
            println!("  publisher: {}", publisher.id());
            println!("  date:      {}", m.created());
            println!("  bundle:    {bundle_sha256} (sha256 of the file, as `sha256sum` shows it)");
            println!(
                "  manifest:  {} (sha256 of manifest.json, the signed content)",
                verified.manifest_id()
            );
            println!("  files:     {} ({size} bytes)", m.files().len());
            Ok(())
        }
    }
}
