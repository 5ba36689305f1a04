//! The passphrase that protects a secret key file, and the one place qasid reads it from the
//! environment or the terminal.
//!
//! A [`Passphrase`] is wiped from memory when dropped and never printed. Nothing else in the
//! library may prompt or touch the terminal: [`passphrase_from_env_or_prompt`] is called by the
//! CLI, never by library code on its own.

use std::fmt;

use zeroize::Zeroizing;

use super::KeyError;

/// Environment variable a passphrase is taken from before falling back to a terminal prompt.
const PASSPHRASE_ENV: &str = "QASID_PASSPHRASE";

/// Longest passphrase accepted, in bytes: the most `minisign` reads from a terminal line (a
/// 1024-byte buffer holding the line, its newline and a NUL), so that `minisign -S` can unlock
/// every key qasid writes.
const PASSPHRASE_MAX_BYTES: usize = 1022;

/// A secret key passphrase: zeroized on drop, `Debug` shows nothing of it.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Checks that minisign could read the same passphrase: not empty (an empty passphrase only
    /// looks like protection), at most 1022 bytes, and without NUL, CR or LF (minisign reads
    /// one C string line).
    pub fn new(passphrase: String) -> Result<Self, KeyError> {
        let passphrase = Zeroizing::new(passphrase);
        if passphrase.is_empty() {
            return Err(KeyError::InvalidPassphrase("it is empty"));
        }
        if passphrase.len() > PASSPHRASE_MAX_BYTES {
            return Err(KeyError::InvalidPassphrase("it is longer than 1022 bytes"));
        }
        if passphrase.contains(['\0', '\r', '\n']) {
            return Err(KeyError::InvalidPassphrase(
                "it contains a NUL or line break character",
            ));
        }
        Ok(Self(passphrase))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Reads a passphrase from `QASID_PASSPHRASE` if set, else prompts on the terminal with
/// `prompt`. With `confirm` (creating a key), a prompted passphrase must be typed twice; one
/// from the environment is taken as is.
pub fn passphrase_from_env_or_prompt(prompt: &str, confirm: bool) -> Result<Passphrase, KeyError> {
    if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        let value = value
            .into_string()
            .map_err(|_| KeyError::InvalidPassphrase("QASID_PASSPHRASE is not valid UTF-8"))?;
        return Passphrase::new(value);
    }
    let mut first = Zeroizing::new(
        rpassword::prompt_password(prompt).map_err(KeyError::PassphraseUnavailable)?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Same passphrase again: ")
                .map_err(KeyError::PassphraseUnavailable)?,
        );
        if *first != *again {
            return Err(KeyError::PassphraseMismatch);
        }
    }
    Passphrase::new(std::mem::take(&mut *first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_debug_does_not_leak() {
        let p = Passphrase::new("hunter2-but-longer".to_owned()).unwrap();
        assert_eq!(format!("{p:?}"), "Passphrase(<redacted>)");
    }

    #[test]
    fn passphrases_minisign_cannot_read_are_refused() {
        for bad in ["", "two\nlines", "cr\r", "nul\0", &"x".repeat(1023)] {
            assert!(
                matches!(
                    Passphrase::new(bad.to_owned()),
                    Err(KeyError::InvalidPassphrase(_))
                ),
                "{bad:?}"
            );
        }
        assert!(Passphrase::new("x".repeat(1022)).is_ok());
        assert!(Passphrase::new("كلمة سر طويلة".to_owned()).is_ok());
    }

    #[test]
    fn passphrase_is_taken_from_the_environment_without_prompting() {
        // Only this test sets the variable; std serialises environment access.
        std::env::set_var(PASSPHRASE_ENV, "from the environment");
        let got = passphrase_from_env_or_prompt("unused: ", true);
        std::env::remove_var(PASSPHRASE_ENV);
        assert_eq!(got.unwrap().as_bytes(), b"from the environment");
    }
}
