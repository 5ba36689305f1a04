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

/// Fewest characters (Unicode scalar values) in the passphrase of a new key. Twelve: three or
/// four random words, or twelve random letters (over 50 bits) that scrypt then makes costly to
/// guess, while still quick to type. A rule a person can check without a meter.
pub const NEW_PASSPHRASE_MIN_CHARS: usize = 12;

/// Fewest different characters in the passphrase of a new key, so that a long run of one key
/// (`aaaaaaaaaaaa`) or a short repeated pattern does not pass the length rule.
pub const NEW_PASSPHRASE_MIN_DISTINCT: usize = 5;

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

    /// Checks the strength rule for protecting a new key: at least
    /// [`NEW_PASSPHRASE_MIN_CHARS`] characters, at least [`NEW_PASSPHRASE_MIN_DISTINCT`] of them
    /// different. Existing keys unlock with whatever passphrase they were made with.
    pub fn check_strength(&self) -> Result<(), KeyError> {
        let chars = self.0.chars().count();
        let mut distinct: Vec<char> = self.0.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let weak = chars < NEW_PASSPHRASE_MIN_CHARS || distinct.len() < NEW_PASSPHRASE_MIN_DISTINCT;
        // The copies of the passphrase's characters are wiped like the passphrase itself.
        zeroize::Zeroize::zeroize(&mut distinct);
        if weak {
            return Err(KeyError::WeakPassphrase {
                min_chars: NEW_PASSPHRASE_MIN_CHARS,
                min_distinct: NEW_PASSPHRASE_MIN_DISTINCT,
            });
        }
        Ok(())
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

/// The passphrase for a new secret key: from `QASID_PASSPHRASE`, else typed twice on a terminal
/// (only when standard input is one, so a script never hangs on a prompt). Refuses a
/// passphrase that fails [`Passphrase::check_strength`], and [`KeyError::NoPassphraseSource`]
/// when there is neither.
pub fn new_key_passphrase(prompt: &str) -> Result<Passphrase, KeyError> {
    use std::io::IsTerminal as _;
    if std::env::var_os(PASSPHRASE_ENV).is_none() && !std::io::stdin().is_terminal() {
        return Err(KeyError::NoPassphraseSource);
    }
    let passphrase = passphrase_from_env_or_prompt(prompt, true)?;
    passphrase.check_strength()?;
    Ok(passphrase)
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
    fn weak_passphrases_are_refused_for_new_keys() {
        for weak in [
            "a",
            "short",
            "elevenchars",
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
        ] {
            let p = Passphrase::new(weak.to_owned()).unwrap();
            assert!(
                matches!(p.check_strength(), Err(KeyError::WeakPassphrase { .. })),
                "{weak:?}"
            );
        }
        for strong in [
            "correct horse battery staple",
            "twelve chars",
            "كلمة سر طويلة",
        ] {
            Passphrase::new(strong.to_owned())
                .unwrap()
                .check_strength()
                .unwrap();
        }
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
