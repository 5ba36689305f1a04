//! `qasid verify`: check a bundle offline against a publisher key.

use std::path::PathBuf;

use clap::Args;
use qasid::bundle;
use qasid::keys::PublicKey;
use qasid::limits::BundleLimits;

use super::{print_json, Failure};

/// Check that a bundle is authentic and whole, offline.
///
/// Exit 0 only if every file matches the manifest and the manifest is signed by PUBKEY;
/// exit 3 with one line naming the first problem otherwise. Nothing is extracted.
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
        let publisher = PublicKey::from_arg(&self.publisher)?;
        let verified = bundle::verify_file(&self.file, &publisher, &BundleLimits::default())?;
        let m = verified.manifest();
        if self.json {
            print_json(&serde_json::json!({
                "verified": true,
                "name": m.name(),
                "version": m.version(),
                "title": m.title(),
                "author": m.author(),
                "date": m.created(),
                "language": m.language(),
                "publisher_id": publisher.id().to_string(),
                "publisher": publisher.to_base64(),
                "manifest_sha256": verified.manifest_id(),
                "files": m.files().len(),
            }))
        } else {
            println!("verified: {} (v{})", m.title(), m.version());
            println!("  name:      {}", m.name());
            println!("  publisher: {}", publisher.id());
            println!("  date:      {}", m.created());
            println!(
                "  content:   {} (sha256 of manifest.json)",
                verified.manifest_id()
            );
            println!("  files:     {}", m.files().len());
            Ok(())
        }
    }
}
