//! Where a note comes from: the `NOTE` of `qasid fetch --note`, `[reader] notes` and
//! `[[note_source]]`.
//!
//! Owns parsing those strings; fetching them is the reader's (`reader::notes`), which bounds
//! every read. Nothing a source returns is trusted: it is text that may hold a note.

use std::path::PathBuf;

use super::NoteError;

/// A note, or a place that holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteSpec {
    /// The note itself: a `qasid:1:…` URI.
    Uri(String),
    /// A file holding one (one URI per line; blank lines and `#` comments skipped).
    File(PathBuf),
    /// An `https://` URL of such a file (`http://` only on a loopback address), such as a
    /// mirror's `qasid/v1/publishers/<pubkey-hex>/note`.
    Url(reqwest::Url),
    /// `dns:NAME`: the TXT records of NAME.
    Dns(String),
}

impl NoteSpec {
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = |reason: &str| NoteError::Invalid(format!("note {text:?}: {reason}"));
        let text = text.trim();
        if text.starts_with("qasid:") {
            return Ok(NoteSpec::Uri(text.to_owned()));
        }
        if let Some(name) = text.strip_prefix("dns:") {
            let name = name.trim_end_matches('.');
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !valid {
                return Err(bad("not a DNS name"));
            }
            return Ok(NoteSpec::Dns(name.to_ascii_lowercase()));
        }
        if text.contains("://") {
            let url = reqwest::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
            let loopback = super::is_loopback(&url);
            return match url.scheme() {
                "https" => Ok(NoteSpec::Url(url)),
                "http" if loopback => Ok(NoteSpec::Url(url)),
                "http" => Err(bad("use https:// (http:// is allowed only on loopback)")),
                _ => Err(bad(
                    "a note source is qasid:…, a file, an https:// URL or dns:NAME",
                )),
            };
        }
        if text.is_empty() {
            return Err(bad("empty"));
        }
        Ok(NoteSpec::File(PathBuf::from(text)))
    }
}

impl std::fmt::Display for NoteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoteSpec::Uri(uri) => {
                let short: String = uri.chars().take(24).collect();
                write!(f, "{short}…")
            }
            NoteSpec::File(path) => write!(f, "{}", path.display()),
            NoteSpec::Url(url) => write!(f, "{url}"),
            NoteSpec::Dns(name) => write!(f, "dns:{name}"),
        }
    }
}

/// The candidate note URIs in a text (a file or an HTTP body): non-empty lines that are not
/// `#` comments, at most `max`.
pub fn candidates(text: &str, max: usize) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(max)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert!(matches!(
            NoteSpec::parse("qasid:1:AAA").unwrap(),
            NoteSpec::Uri(_)
        ));
        assert_eq!(
            NoteSpec::parse("dns:_qasid.Example.org.").unwrap(),
            NoteSpec::Dns("_qasid.example.org".into())
        );
        assert!(NoteSpec::parse("dns:bad name").is_err());
        assert!(matches!(
            NoteSpec::parse("https://m.example/note").unwrap(),
            NoteSpec::Url(_)
        ));
        assert!(NoteSpec::parse("http://m.example/note").is_err());
        assert!(NoteSpec::parse("http://127.0.0.1:8080/note").is_ok());
        assert!(matches!(
            NoteSpec::parse("note.txt").unwrap(),
            NoteSpec::File(_)
        ));
        assert_eq!(
            candidates("# c\n\n qasid:1:x \nqasid:1:y\n", 1),
            ["qasid:1:x"]
        );
    }
}
