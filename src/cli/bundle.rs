//! `qasid bundle`: turn an article folder into a signed, deterministic bundle.

use std::path::PathBuf;

use clap::Args;
use qasid::bundle::{self, CreateOptions};
use qasid::limits::BundleLimits;

use super::{json, load_secret_key, print_json, Failure};

/// Sign an article folder into a deterministic bundle (FILE.zip and FILE.zip.minisig).
///
/// SRC_DIR holds article.md (with title, author, date and language front matter) and any
/// assets, in subfolders if wanted. The same folder and key always give a byte-identical zip.
/// Symlinks, unsafe or non-UTF-8 names and oversized files are refused.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  qasid bundle seeds/mirror-network-launch --key keys/publisher.key --out launch.zip\n  minisign -Vm launch.zip -p keys/publisher.pub   # optional check with stock minisign"
)]
pub struct BundleArgs {
    /// The article folder.
    src_dir: PathBuf,
    /// The publisher's secret key file (from `qasid keygen`).
    #[arg(long, value_name = "SECRET")]
    key: PathBuf,
    /// Where to write the bundle; FILE.minisig is written next to it.
    #[arg(long, value_name = "FILE.zip")]
    out: PathBuf,
    /// Article name (lowercase letters, digits, dashes). Default: the folder's name.
    #[arg(long, value_name = "SLUG")]
    name: Option<String>,
    /// Article version; publish a correction as a higher version. Default: 1.
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl BundleArgs {
    pub fn run(self) -> Result<(), Failure> {
        let secret = load_secret_key(&self.key)?;
        let created = bundle::create(
            &self.src_dir,
            &secret,
            &self.out,
            &CreateOptions {
                name: self.name,
                version: self.version,
                limits: BundleLimits::default(),
            },
        )?;
        let m = created.manifest();
        if self.json {
            print_json(&serde_json::json!({
                "path": created.path(),
                "publisher": json::publisher(secret.public()),
                "minisig": created.minisig_path(),
                "name": m.name(),
                "version": m.version(),
                "title": m.title(),
                "files": m.files().len(),
                "sha256": created.sha256(),
                "size": created.size(),
            }))
        } else {
            println!(
                "bundled {} v{} ({} files, {} bytes)",
                m.name(),
                m.version(),
                m.files().len(),
                created.size()
            );
            println!("bundle:  {}", created.path().display());
            println!("minisig: {}", created.minisig_path().display());
            println!("sha256:  {}", created.sha256());
            Ok(())
        }
    }
}
