//! HTML escaping: the one way text from a bundle, an index or a configuration reaches markup.
//!
//! [`Text`] escapes on display, so a page template interpolates `Text(value)` and nothing else
//! that came from outside (numbers, [`crate::content_id::ContentId`] and
//! [`crate::keys::KeyId`] display as digits and hex only). It also drops the Unicode bidi
//! overrides and isolates that [`crate::render`] removes from terminal text, so a title cannot
//! make itself read as something else. This module never builds pages.

use std::fmt;

/// Text to be written into element content or a double-quoted attribute value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Text<'a>(pub(super) &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(needs_escape) {
            f.write_str(&rest[..i])?;
            let c = rest[i..]
                .chars()
                .next()
                .expect("find returned a char boundary");
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                // Hidden characters (crate::shown) other than tab and newline: dropped.
                _ => {}
            }
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    matches!(c, '&' | '<' | '>' | '"' | '\'')
        || (crate::shown::is_hidden(c) && c != '\n' && c != '\t')
}

/// Invisible formatting characters (bidi overrides and isolates, zero-width space, ...) that
/// [`crate::shown`] drops; controls are left to the caller.
pub(super) fn is_invisible(c: char) -> bool {
    !c.is_control() && crate::shown::is_hidden(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        let shown = Text(r#"<b>"Tom" & 'Jerry'</b>"#).to_string();
        assert_eq!(
            shown,
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn drops_bidi_overrides_and_controls_but_keeps_rtl_text_and_marks() {
        let shown = Text("photo\u{202E}gnp.exe \u{1b}[31m خبر\u{200F}").to_string();
        assert_eq!(shown, "photognp.exe [31m خبر\u{200F}");
    }
}
