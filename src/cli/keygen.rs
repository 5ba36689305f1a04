//! `qasid keygen`: create a publisher key pair.

use std::path::PathBuf;

use clap::Args;
use qasid::keys::{self, SecretKey};

use super::{print_json, Failure};

/// Create a publisher key pair: DIR/publisher.key (secret) and DIR/publisher.pub.
///
/// publisher.pub is a minisign public key file: readers can pass it (or its second line, the
/// one-line base64 key) as --publisher, and `minisign -V` accepts it. Keep publisher.key off
/// machines that may be seized, or use --encrypt.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  qasid keygen --out ~/.qasid\n  QASID_PASSPHRASE=... qasid keygen --out keys --encrypt"
)]
pub struct KeygenArgs {
    /// Folder to write publisher.key and publisher.pub into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Overwrite existing key files. The old secret key is lost for good.
    #[arg(long)]
    force: bool,
    /// Protect the secret key with a passphrase (asked on the terminal, or QASID_PASSPHRASE)
    /// through scrypt, a memory-hard key derivation.
    #[arg(long)]
    encrypt: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

impl KeygenArgs {
    pub fn run(self) -> Result<(), Failure> {
        let passphrase = if self.encrypt {
            Some(keys::passphrase_from_env_or_prompt(
                "Passphrase for the new secret key: ",
                true,
            )?)
        } else {
            None
        };
        let secret = SecretKey::generate();
        let paths = keys::write_key_pair(&self.out, &secret, passphrase.as_ref(), self.force)?;
        let public = secret.public();
        if self.json {
            print_json(&serde_json::json!({
                "key_id": public.id().to_string(),
                "public_key": public.to_base64(),
                "secret_key_file": paths.secret,
                "public_key_file": paths.public,
                "encrypted": self.encrypt,
            }))
        } else {
            println!("key id:      {}", public.id());
            println!("public key:  {}", public.to_base64());
            println!("secret key:  {} (keep it private)", paths.secret.display());
            println!("public file: {}", paths.public.display());
            Ok(())
        }
    }
}
