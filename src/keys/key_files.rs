//! A publisher's key pair on disk: `publisher.key` and `publisher.pub` in one folder.
//!
//! Owns file names, permissions and how key files are replaced. The secret key file is created
//! owner-only (0600) before its first byte is written, and every write goes through a temporary
//! file in the same folder, fsync, rename and a folder fsync, so a crash leaves the old file or
//! the new one, never a mix. Existing keys are only replaced when the caller says `force`. This
//! module never prompts or prints: a passphrase comes from the caller, and a too-open key file
//! is reported by [`key_file_too_open`] for the CLI to warn about.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{secret_file, KeyError, Passphrase, PublicKey, SecretKey};

const SECRET_KEY_FILE: &str = "publisher.key";
const PUBLIC_KEY_FILE: &str = "publisher.pub";

/// Largest secret key file read: minisign's comment line is at most 1023 bytes and the key line
/// 212, so anything past 4 KiB is not a key file.
const SECRET_KEY_FILE_MAX: u64 = 4096;

/// Permission bits of a secret key file: owner read/write only.
const SECRET_MODE: u32 = 0o600;
/// Permission bits of a public key file: anyone may read it.
const PUBLIC_MODE: u32 = 0o644;

/// Where [`write_key_pair`] wrote the two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPairPaths {
    /// `DIR/publisher.key`, mode 0600.
    pub secret: PathBuf,
    /// `DIR/publisher.pub`, a minisign public key file.
    pub public: PathBuf,
}

/// Writes `DIR/publisher.key` (encrypted when `passphrase` is given) and `DIR/publisher.pub`,
/// creating `dir` (0700) if needed. Without `force`, refuses with [`KeyError::AlreadyExists`]
/// if either file exists, and never replaces one that appears meanwhile. The secret file is
/// written first, so a failure can never leave a public key whose secret half is missing.
pub fn write_key_pair(
    dir: &Path,
    sk: &SecretKey,
    passphrase: Option<&Passphrase>,
    force: bool,
) -> Result<KeyPairPaths, KeyError> {
    let paths = KeyPairPaths {
        secret: dir.join(SECRET_KEY_FILE),
        public: dir.join(PUBLIC_KEY_FILE),
    };
    create_dir(dir)?;
    if !force {
        for path in [&paths.secret, &paths.public] {
            match path.symlink_metadata() {
                Ok(_) => return Err(KeyError::AlreadyExists(path.display().to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io_error(path, source)),
            }
        }
    }
    // Encrypt before creating anything: scrypt takes about a second.
    let secret_text = Zeroizing::new(sk.to_file_text(passphrase));
    let public_text = sk.public().to_file_text();
    write_atomic(&paths.secret, secret_text.as_bytes(), SECRET_MODE, force)?;
    write_atomic(&paths.public, public_text.as_bytes(), PUBLIC_MODE, force)?;
    Ok(paths)
}

/// Reads a secret key file, calling `passphrase_source` only if the file is encrypted.
pub fn load_secret_key(
    path: &Path,
    passphrase_source: impl FnOnce() -> Result<Passphrase, KeyError>,
) -> Result<SecretKey, KeyError> {
    let file = File::open(path).map_err(|source| io_error(path, source))?;
    // Sized up front so reading never reallocates and leaves copies of the key behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(SECRET_KEY_FILE_MAX as usize + 1));
    file.take(SECRET_KEY_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| io_error(path, source))?;
    if bytes.len() as u64 > SECRET_KEY_FILE_MAX {
        return Err(KeyError::MalformedSecretKey(
            "file is too large to be a secret key",
        ));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| KeyError::MalformedSecretKey("not UTF-8 text"))?;
    if PublicKey::from_file_text(text).is_ok() {
        return Err(KeyError::PublicKeyGiven {
            path: path.display().to_string(),
            secret: secret_key_beside(path).display().to_string(),
        });
    }
    let passphrase = if SecretKey::is_encrypted_file(text)? {
        Some(passphrase_source()?)
    } else {
        None
    };
    secret_file::decode(text, passphrase.as_ref(), &path.display().to_string())
}

/// Where the secret half of the public key file `public` most likely is: `NAME.key` for
/// `NAME.pub` (keygen writes the pair side by side), else `publisher.key` in the same folder.
fn secret_key_beside(public: &Path) -> PathBuf {
    if public.extension().is_some_and(|e| e == "pub") {
        public.with_extension("key")
    } else {
        public.with_file_name(SECRET_KEY_FILE)
    }
}

/// Whether a key file grants any access to its group or to other users (mode & 0o077), so the
/// CLI can warn. False when the file cannot be inspected (loading it will say why) and on
/// platforms without Unix permissions.
pub fn key_file_too_open(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn io_error(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Creates `dir` and missing parents; new folders are owner-only, like minisign's.
fn create_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| io_error(dir, source))
}

/// Writes `contents` to `path` through a temporary file in the same folder created with
/// `mode` (Unix permission bits; ignored elsewhere), then fsyncs the file, renames it into place
/// (refusing to replace an existing file unless `overwrite`) and fsyncs the folder.
fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<(), KeyError> {
    let dir = path.parent().expect("key file paths are DIR/NAME");
    let mut builder = tempfile::Builder::new();
    builder.prefix(".qasid-key-");
    #[cfg(not(unix))]
    let _ = mode;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(mode));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|source| io_error(dir, source))?;
    // The umask may have cleared bits of `mode`; set it exactly before any byte is written.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|source| io_error(tmp.path(), source))?;
    }
    tmp.write_all(contents)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|source| io_error(tmp.path(), source))?;
    if overwrite {
        tmp.persist(path).map_err(|e| io_error(path, e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists(path.display().to_string())
            } else {
                io_error(path, e.error)
            }
        })?;
    }
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| io_error(dir, source))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::cell::Cell;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::keys::PublicKey;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn no_passphrase() -> Result<Passphrase, KeyError> {
        panic!("an unencrypted key must not ask for a passphrase")
    }

    #[test]
    fn key_pair_is_written_owner_only_and_loads_back() {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = tmp.path().join("new").join("keys");
        let sk = SecretKey::generate();
        let paths = write_key_pair(&dir, &sk, None, false).unwrap();
        assert_eq!(paths.secret, dir.join("publisher.key"));
        assert_eq!(paths.public, dir.join("publisher.pub"));
        assert_eq!(mode(&paths.secret), 0o600);
        assert_eq!(mode(&paths.public), 0o644);
        assert_eq!(mode(&dir), 0o700);
        assert!(!key_file_too_open(&paths.secret));
        let loaded = load_secret_key(&paths.secret, no_passphrase).unwrap();
        assert_eq!(loaded.public(), sk.public());
        let public = PublicKey::from_file_text(&fs::read_to_string(&paths.public).unwrap());
        assert_eq!(&public.unwrap(), sk.public());
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["publisher.key", "publisher.pub"],
            "no temp files left"
        );
    }

    #[test]
    fn existing_key_files_are_kept_unless_forced() {
        let tmp = tempfile::TempDir::new().unwrap();
        let first = SecretKey::generate();
        let paths = write_key_pair(tmp.path(), &first, None, false).unwrap();
        let second = SecretKey::generate();
        assert!(matches!(
            write_key_pair(tmp.path(), &second, None, false),
            Err(KeyError::AlreadyExists(name)) if name.ends_with("publisher.key")
        ));
        fs::remove_file(&paths.secret).unwrap();
        assert!(matches!(
            write_key_pair(tmp.path(), &second, None, false),
            Err(KeyError::AlreadyExists(name)) if name.ends_with("publisher.pub")
        ));
        assert!(!paths.secret.exists(), "nothing written when refusing");
        write_key_pair(tmp.path(), &first, None, false).unwrap_err();
        write_key_pair(tmp.path(), &second, None, true).unwrap();
        let loaded = load_secret_key(&paths.secret, no_passphrase).unwrap();
        assert_eq!(loaded.public(), second.public());
        assert_eq!(mode(&paths.secret), 0o600);
    }

    #[test]
    fn encrypted_key_asks_for_the_passphrase_once() {
        // write_key_pair's full-cost scrypt is exercised by tests/keys_minisign.rs; here a
        // cheap encrypted file is enough.
        let tmp = tempfile::TempDir::new().unwrap();
        let path = tmp.path().join("publisher.key");
        let sk = SecretKey::from_seed(&[5u8; 32]);
        let pass = || Passphrase::new("open sesame".to_owned());
        fs::write(&path, secret_file::cheaply_encrypted(&sk, &pass().unwrap())).unwrap();
        let asked = Cell::new(0);
        let loaded = load_secret_key(&path, || {
            asked.set(asked.get() + 1);
            pass()
        })
        .unwrap();
        assert_eq!(asked.get(), 1);
        assert_eq!(loaded.public(), sk.public());
        let wrong = load_secret_key(&path, || Passphrase::new("open barley".to_owned()));
        assert!(
            matches!(wrong, Err(KeyError::WrongPassphrase(name)) if name == path.display().to_string())
        );
    }

    #[test]
    fn group_or_world_access_is_flagged() {
        let tmp = tempfile::TempDir::new().unwrap();
        let paths = write_key_pair(tmp.path(), &SecretKey::generate(), None, false).unwrap();
        for (bits, too_open) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            fs::set_permissions(&paths.secret, fs::Permissions::from_mode(bits)).unwrap();
            assert_eq!(key_file_too_open(&paths.secret), too_open, "{bits:o}");
        }
        assert!(!key_file_too_open(&tmp.path().join("missing")));
    }

    #[test]
    fn oversized_or_missing_key_files_are_refused() {
        let tmp = tempfile::TempDir::new().unwrap();
        let path = tmp.path().join("big.key");
        fs::write(&path, vec![b'a'; 5000]).unwrap();
        assert!(matches!(
            load_secret_key(&path, no_passphrase),
            Err(KeyError::MalformedSecretKey(_))
        ));
        assert!(matches!(
            load_secret_key(&tmp.path().join("missing.key"), no_passphrase),
            Err(KeyError::Io { .. })
        ));
    }
}
