//! Untrusted text made safe to show: the one rule for which characters of a title, an author,
//! a file name, a mirror's answer or an error quoting one may reach a terminal or a page.
//!
//! Dropped (or, in error messages, escaped): C0 and C1 controls and DEL (escape sequences
//! start with them), and Unicode format characters (general category Cf: bidi embeddings,
//! overrides and isolates, zero-width space, word joiner, byte order mark, invisible
//! operators, tag characters, ...), which reorder or hide the text around them, so a title
//! could read as something else (`photo\u{202E}gnp.exe`). Kept, because spelling needs them:
//! ZWNJ and ZWJ (Persian, Urdu and Indic word shapes, emoji sequences) and the bidi marks LRM,
//! RLM and ALM (they set the direction of neighbouring punctuation in Arabic-script text and
//! cannot reorder letters). This module never prints: callers do.

use icu_properties::props::GeneralCategory;
use icu_properties::CodePointMapData;

/// Whether `c` is dropped from untrusted text before it is shown (see the module comment).
pub fn is_hidden(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    if matches!(
        c,
        '\u{200C}' | '\u{200D}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    ) {
        return false;
    }
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format
}

/// One line of untrusted text for a terminal: hidden characters dropped, and line breaks and
/// tabs (controls too) dropped with them, so a value cannot start a line that looks like
/// qasid's own output.
pub fn line(text: &str) -> String {
    text.chars().filter(|&c| !is_hidden(c)).collect()
}

/// Untrusted text of several lines (an article rendered for a terminal): hidden characters
/// dropped, newlines kept, tabs made spaces.
pub fn lines(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some('\n'),
            '\t' => Some(' '),
            c if is_hidden(c) => None,
            c => Some(c),
        })
        .collect()
}

/// Untrusted bytes quoted in an error message: not valid UTF-8 replaced, hidden characters
/// written as `\u{..}` escapes, so the message shows what was there without acting on it. Unlike
/// article text ([`line`]), the joiners and direction marks that Arabic-script text needs are
/// escaped too: a quoted field name or value has no use for them, and a mark could still turn
/// the neutral characters around it (found by the `fuzz_root` target).
pub fn escaped(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if is_hidden(c)
                || matches!(
                    c,
                    '\u{200C}' | '\u{200D}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
                )
            {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_untrusted_bytes_escape_direction_marks_too() {
        // The fuzz_root finding: an unknown field name carrying U+200E reached the message raw.
        let quoted = escaped("format\u{200e}x\u{1b}y\u{061c}".as_bytes());
        assert_eq!(quoted, "format\\u{200e}x\\u{1b}y\\u{61c}");
        assert_eq!(
            line("\u{0627}\u{200e}"),
            "\u{0627}\u{200e}",
            "article text keeps its marks"
        );
    }

    #[test]
    fn bidi_overrides_isolates_and_invisible_characters_are_dropped() {
        for c in [
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200B}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{2062}',
            '\u{E0041}',
            '\u{1b}',
            '\u{7f}',
            '\u{9b}',
            '\n',
            '\t',
        ] {
            assert!(is_hidden(c), "{:?}", c.escape_unicode().to_string());
        }
        assert_eq!(
            line("photo\u{202E}gnp.exe\u{200B}\u{1b}[2J"),
            "photognp.exe[2J"
        );
    }

    #[test]
    fn rtl_text_joiners_and_marks_are_kept() {
        let urdu = "خبر\u{200F} می\u{200C}خواهم 👩\u{200D}💻 \u{061C}";
        assert_eq!(line(urdu), urdu);
        assert_eq!(lines("a\tb\nc\u{202E}"), "a b\nc");
        assert_eq!(escaped("x\u{202E}y".as_bytes()), "x\\u{202e}y");
    }
}
