//! `qasid keygen`: create a publisher key pair.

use std::path::PathBuf;

use clap::Args;
use qasid::keys::{self, SecretKey};

use super::{json, print_json, Failure};

/// Create a publisher key pair: DIR/publisher.key (secret) and DIR/publisher.pub.
///
/// publisher.pub is a minisign public key file: readers can pass it (or its second line, the
/// one-line base64 key) as --publisher, and `minisign -V` accepts it. Like minisign, the secret
/// key is encrypted with a passphrase (scrypt, a memory-hard key derivation) unless
/// --unencrypted is given. The passphrase is typed twice on the terminal or taken from
/// QASID_PASSPHRASE; a new key needs at least 12 characters, at least 5 of them different.
/// Without a terminal, QASID_PASSPHRASE or --unencrypted, keygen stops with exit code 2.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  qasid keygen --out ~/.qasid                              # asks for a passphrase
  QASID_PASSPHRASE=... qasid keygen --out keys             # scripted, still encrypted
  qasid keygen --out keys --unencrypted                    # for unattended signing only

Back up publisher.key and its passphrase (separately) and the repo folder: see the README.")]
pub struct KeygenArgs {
    /// Folder to write publisher.key and publisher.pub into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Overwrite existing key files. The old secret key is lost for good.
    #[arg(long)]
    force: bool,
    /// Write the secret key without a passphrase, for unattended signing (cron). Anyone who can
    /// read the file can then sign in your name.
    #[arg(long, conflicts_with = "encrypt")]
    unencrypted: bool,
    /// Accepted for old scripts: keys are encrypted unless --unencrypted is given.
    #[arg(long, hide = true)]
    encrypt: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl KeygenArgs {
    pub fn run(self) -> Result<(), Failure> {
        let passphrase = if self.unencrypted {
            None
        } else {
            Some(keys::new_key_passphrase(
                "Passphrase for the new secret key: ",
            )?)
        };
        let secret = SecretKey::generate();
        let paths = keys::write_key_pair(&self.out, &secret, passphrase.as_ref(), self.force)?;
        let public = secret.public();
        if self.json {
            print_json(&serde_json::json!({
                "publisher": json::publisher(public),
                "secret_key_file": paths.secret,
                "public_key_file": paths.public,
                "encrypted": passphrase.is_some(),
            }))
        } else {
            println!("key id:      {}", public.id());
            println!("public key:  {}", public.to_base64());
            let how = if passphrase.is_some() {
                "encrypted"
            } else {
                "UNENCRYPTED"
            };
            println!(
                "secret key:  {} ({how}; keep it private, back it up)",
                paths.secret.display()
            );
            println!("public file: {}", paths.public.display());
            Ok(())
        }
    }
}
