//! The front matter of an article folder's `article.md`: title, author, date and language.
//!
//! Owns the front matter grammar (documented in docs/FORMAT.md) and the rules for its values,
//! which the manifest reuses so that anything a publisher can write here is a valid manifest
//! field. This module only parses text: it never reads files and never decides trust (an
//! `article.md` is trusted only once its bundle has been verified).
//!
//! Grammar: the file starts with a line `---`; then one `key: value` line per field, keys
//! lowercase ASCII `[a-z_]+`, value the rest of the line with surrounding whitespace trimmed and
//! non-empty; then a line `---`. Lines end with `\n` (a `\r` before it is refused, with a hint).
//! `title`, `author`, `date` (`YYYY-MM-DD`, a real calendar date) and `language`
//! (`[a-z]{2,3}(-[A-Za-z0-9]{2,8})*`) are required; unknown keys are allowed and ignored;
//! a key given twice is refused. Errors name the 1-based line number.

use std::collections::HashSet;

/// Why `article.md`'s front matter was refused. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArticleError {
    #[error("line 1: article.md must start with a front matter line `---`")]
    MissingOpening,
    #[error("line {line}: Windows line endings (\\r\\n) are not allowed in the front matter")]
    CarriageReturn { line: usize },
    #[error("line {line}: front matter is never closed by a line `---`")]
    Unclosed { line: usize },
    #[error("line {line}: expected `key: value` with a lowercase key of a-z and _")]
    MalformedLine { line: usize },
    #[error("line {line}: `{key}` has an empty value")]
    EmptyValue { line: usize, key: String },
    #[error("line {line}: `{key}` contains a control character")]
    ControlCharacter { line: usize, key: String },
    #[error("line {line}: `{key}` is given twice")]
    DuplicateKey { line: usize, key: String },
    #[error("line {line}: date {value:?} is not a real calendar date in the form YYYY-MM-DD")]
    BadDate { line: usize, value: String },
    #[error("line {line}: language {value:?} is not a language tag like `en`, `fa` or `pt-BR`")]
    BadLanguage { line: usize, value: String },
    #[error("line {line}: required field `{key}` is missing from the front matter")]
    MissingField { line: usize, key: &'static str },
}

/// The validated front matter of an `article.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontMatter {
    title: String,
    author: String,
    date: String,
    language: String,
}

impl FrontMatter {
    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn author(&self) -> &str {
        &self.author
    }

    /// `YYYY-MM-DD`, a real calendar date.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// A language tag such as `en`, `fa` or `pt-BR`.
    pub fn language(&self) -> &str {
        &self.language
    }
}

/// A parsed `article.md`: its front matter and the Markdown body after the closing `---`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article<'a> {
    pub front_matter: FrontMatter,
    pub body: &'a str,
}

/// Parses `article.md` text. See the module documentation for the grammar.
pub fn parse(text: &str) -> Result<Article<'_>, ArticleError> {
    let mut rest = text
        .strip_prefix("---\n")
        .ok_or(if text.starts_with("---\r\n") {
            ArticleError::CarriageReturn { line: 1 }
        } else {
            ArticleError::MissingOpening
        })?;
    let mut line_no = 1;
    let mut seen = HashSet::new();
    let (mut title, mut author, mut date, mut language) = (None, None, None, None);
    loop {
        line_no += 1;
        let (line, after) = match rest.split_once('\n') {
            Some(split) => split,
            // The closing line may be the file's last line, without a newline.
            None if rest == "---" => (rest, ""),
            None => return Err(ArticleError::Unclosed { line: line_no }),
        };
        rest = after;
        if line.ends_with('\r') {
            return Err(ArticleError::CarriageReturn { line: line_no });
        }
        if line == "---" {
            break;
        }
        let (key, value) = line
            .split_once(':')
            .filter(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| matches!(b, b'a'..=b'z' | b'_'))
            })
            .ok_or(ArticleError::MalformedLine { line: line_no })?;
        let value = value.trim();
        if value.is_empty() {
            return Err(ArticleError::EmptyValue {
                line: line_no,
                key: key.to_owned(),
            });
        }
        if value.chars().any(char::is_control) {
            return Err(ArticleError::ControlCharacter {
                line: line_no,
                key: key.to_owned(),
            });
        }
        if !seen.insert(key) {
            return Err(ArticleError::DuplicateKey {
                line: line_no,
                key: key.to_owned(),
            });
        }
        let slot = match key {
            "title" => &mut title,
            "author" => &mut author,
            "date" if !is_valid_date(value) => {
                return Err(ArticleError::BadDate {
                    line: line_no,
                    value: value.to_owned(),
                })
            }
            "date" => &mut date,
            "language" if !is_valid_language(value) => {
                return Err(ArticleError::BadLanguage {
                    line: line_no,
                    value: value.to_owned(),
                })
            }
            "language" => &mut language,
            // Unknown keys are allowed (publishers' tools may add their own) and ignored.
            _ => continue,
        };
        *slot = Some(value.to_owned());
    }
    let missing = |key| ArticleError::MissingField { line: line_no, key };
    let front_matter = FrontMatter {
        title: title.ok_or_else(|| missing("title"))?,
        author: author.ok_or_else(|| missing("author"))?,
        date: date.ok_or_else(|| missing("date"))?,
        language: language.ok_or_else(|| missing("language"))?,
    };
    Ok(Article {
        front_matter,
        body: rest,
    })
}

/// Whether a title or author value is acceptable: non-empty, no surrounding whitespace, no
/// control characters. Exactly what the front matter parser can produce.
pub(crate) fn is_valid_text_value(value: &str) -> bool {
    !value.is_empty() && value.trim() == value && !value.chars().any(char::is_control)
}

/// `YYYY-MM-DD` naming a real day of the proleptic Gregorian calendar.
pub(crate) fn is_valid_date(value: &str) -> bool {
    let bytes = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        bytes[range].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

/// A BCP-47-like tag: `[a-z]{2,3}(-[A-Za-z0-9]{2,8})*`.
pub(crate) fn is_valid_language(value: &str) -> bool {
    let mut parts = value.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    primary_ok
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Scripts written right to left, as ISO 15924 codes (a tag's four-letter subtag).
const RTL_SCRIPTS: &[&str] = &[
    "adlm", "arab", "hebr", "mand", "nkoo", "rohg", "samr", "syrc", "thaa", "yezi",
];

/// Languages whose usual script is written right to left, by primary subtag.
const RTL_LANGUAGES: &[&str] = &[
    "ar", "arc", "azb", "bal", "ckb", "dv", "fa", "glk", "he", "iw", "ji", "khw", "ks", "lrc",
    "mzn", "nqo", "pnb", "prs", "ps", "sd", "skr", "syr", "ug", "ur", "yi",
];

/// Whether text in `language` is laid out right to left. An explicit script subtag decides
/// (`az-Arab` is, `sd-Deva` is not); otherwise the primary language's usual script does.
pub fn is_right_to_left(language: &str) -> bool {
    let mut parts = language.split('-');
    let primary = parts.next().unwrap_or_default().to_ascii_lowercase();
    let script = parts.find(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_alphabetic()));
    match script {
        Some(script) => RTL_SCRIPTS.contains(&script.to_ascii_lowercase().as_str()),
        None => RTL_LANGUAGES.contains(&primary.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "---\ntitle: Hello\nauthor:  A. Writer \ndate: 2024-02-29\nlanguage: fa\nextra_key: ignored\n---\nBody\n";

    #[test]
    fn parses_front_matter_and_body() {
        let article = parse(GOOD).unwrap();
        let fm = &article.front_matter;
        assert_eq!(
            (fm.title(), fm.author(), fm.date(), fm.language()),
            ("Hello", "A. Writer", "2024-02-29", "fa")
        );
        assert_eq!(article.body, "Body\n");
    }

    #[test]
    fn closing_line_may_end_the_file() {
        let text = "---\ntitle: t\nauthor: a\ndate: 2020-01-01\nlanguage: en\n---";
        assert_eq!(parse(text).unwrap().body, "");
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, ArticleError)] = &[
            ("# no front matter\n", ArticleError::MissingOpening),
            (
                "---\r\ntitle: t\r\n",
                ArticleError::CarriageReturn { line: 1 },
            ),
            ("---\ntitle: t\n", ArticleError::Unclosed { line: 3 }),
            (
                "---\nTitle: t\n---\n",
                ArticleError::MalformedLine { line: 2 },
            ),
            ("---\n\n---\n", ArticleError::MalformedLine { line: 2 }),
            (
                "---\ntitle:   \n---\n",
                ArticleError::EmptyValue {
                    line: 2,
                    key: "title".into(),
                },
            ),
            (
                "---\ntitle: a\ntitle: b\n---\n",
                ArticleError::DuplicateKey {
                    line: 3,
                    key: "title".into(),
                },
            ),
            (
                "---\ndate: 2023-02-29\n---\n",
                ArticleError::BadDate {
                    line: 2,
                    value: "2023-02-29".into(),
                },
            ),
            (
                "---\nlanguage: English\n---\n",
                ArticleError::BadLanguage {
                    line: 2,
                    value: "English".into(),
                },
            ),
            (
                "---\ntitle: t\nauthor: a\ndate: 2020-01-01\n---\n",
                ArticleError::MissingField {
                    line: 5,
                    key: "language",
                },
            ),
            (
                "---\ntitle: a\tb\n---\n",
                ArticleError::ControlCharacter {
                    line: 2,
                    key: "title".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(&parse(text).unwrap_err(), expected, "{text:?}");
        }
    }

    #[test]
    fn dates_must_exist() {
        for good in ["2024-02-29", "2000-02-29", "1999-12-31", "2026-01-01"] {
            assert!(is_valid_date(good), "{good}");
        }
        for bad in [
            "1900-02-29",
            "2023-02-29",
            "2024-04-31",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "24-01-01x",
            "2024/01/01",
            "+024-01-01",
        ] {
            assert!(!is_valid_date(bad), "{bad}");
        }
    }

    #[test]
    fn language_tags() {
        for good in ["en", "fa", "ckb", "pt-BR", "zh-Hant-TW", "az-Arab"] {
            assert!(is_valid_language(good), "{good}");
        }
        for bad in [
            "",
            "e",
            "EN",
            "engl",
            "en-",
            "en-x",
            "en_US",
            "pt-BR-toolongsubtag",
        ] {
            assert!(!is_valid_language(bad), "{bad}");
        }
    }

    #[test]
    fn right_to_left_languages() {
        for rtl in [
            "ar", "fa", "ur", "he", "ps", "sd", "ug", "yi", "dv", "ckb", "fa-IR", "az-Arab", "AR",
        ] {
            assert!(is_right_to_left(rtl), "{rtl}");
        }
        for ltr in ["en", "ru", "ku", "az", "sd-Deva", "zh-Hant", "tr"] {
            assert!(!is_right_to_left(ltr), "{ltr}");
        }
    }
}
