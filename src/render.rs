//! Terminal rendering of a verified article: headings, wrapped paragraphs, lists, quotes, and
//! links and images listed as numbered references after the text.
//!
//! Input is the Markdown body of an article that has already been verified, but a verified
//! article is only as honest as its publisher: every character that could drive the terminal
//! (escape sequences, other control characters, bidi overrides) is removed before output.
//! This module never reads files, never prints: it returns a `String`.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use unicode_width::UnicodeWidthStr;

/// How to lay out the text.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// Column at which paragraphs wrap; at least 20.
    pub width: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { width: 80 }
    }
}

/// The article header shown above the body.
#[derive(Debug, Clone)]
pub struct ArticleHeader<'a> {
    pub title: &'a str,
    pub author: &'a str,
    pub date: &'a str,
    pub language: &'a str,
}

/// Renders `article.md` (front matter included; it is skipped) as plain terminal text.
pub fn render_article(header: &ArticleHeader<'_>, markdown: &str, opts: RenderOptions) -> String {
    let width = opts.width.max(20);
    let mut out = Renderer::new(width);
    let title = clean(header.title);
    out.lines.push(title.clone());
    out.lines
        .push("=".repeat(UnicodeWidthStr::width(title.as_str()).clamp(3, width)));
    out.lines.push(format!(
        "{} · {} · {}",
        clean(header.author),
        clean(header.date),
        clean(header.language)
    ));
    out.lines.push(String::new());
    out.run(strip_front_matter(markdown));
    out.finish()
}

/// Removes a leading `---` … `---` block, if present.
fn strip_front_matter(markdown: &str) -> &str {
    let Some(rest) = markdown.strip_prefix("---\n") else {
        return markdown;
    };
    match rest.find("\n---\n") {
        Some(end) => &rest[end + 5..],
        None => match rest.strip_suffix("\n---") {
            Some(_) => "",
            None => markdown,
        },
    }
}

/// Untrusted article text for a terminal: no controls, bidi overrides or invisible characters
/// (see [`crate::shown`]); newlines kept, tabs made spaces.
use crate::shown::lines as clean;

struct Renderer {
    width: usize,
    lines: Vec<String>,
    /// Words of the paragraph being built.
    words: Vec<String>,
    /// Inline text not yet split into words (words may span several events, e.g. `a*b*c`).
    pending: String,
    /// Prefixes for the current nesting (quote bars, list indentation).
    prefix: Vec<&'static str>,
    /// Bullet or number of the list item whose first line is being written.
    item_marker: Option<String>,
    /// Next number of each open list (`None` for bullets).
    lists: Vec<Option<u64>>,
    /// Link and image targets, listed after the text.
    refs: Vec<String>,
    /// Targets of the links currently open, to number them at their end.
    open_links: Vec<String>,
    heading: Option<HeadingLevel>,
    in_code_block: bool,
}

impl Renderer {
    fn new(width: usize) -> Self {
        Self {
            width,
            lines: Vec::new(),
            words: Vec::new(),
            pending: String::new(),
            prefix: Vec::new(),
            item_marker: None,
            lists: Vec::new(),
            refs: Vec::new(),
            open_links: Vec::new(),
            heading: None,
            in_code_block: false,
        }
    }

    fn run(&mut self, markdown: &str) {
        let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
        for event in Parser::new_ext(markdown, options) {
            self.event(event);
        }
        self.flush_paragraph();
    }

    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) if self.in_code_block => {
                for line in clean(&text).lines() {
                    let prefix = self.prefix_string();
                    self.lines.push(format!("{prefix}    {line}"));
                }
            }
            Event::Text(text) | Event::Code(text) => self.pending.push_str(&clean(&text)),
            Event::InlineHtml(html) | Event::Html(html) => self.pending.push_str(&clean(&html)),
            Event::SoftBreak => self.pending.push(' '),
            Event::HardBreak => {
                self.flush_paragraph();
            }
            Event::Rule => {
                self.flush_paragraph();
                self.lines.push("-".repeat(self.width.min(40)));
                self.lines.push(String::new());
            }
            Event::TaskListMarker(done) => {
                self.pending.push_str(if done { "[x] " } else { "[ ] " })
            }
            Event::FootnoteReference(name) => {
                self.pending.push_str(&format!("[^{}]", clean(&name)))
            }
            Event::InlineMath(_) | Event::DisplayMath(_) => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.flush_paragraph();
                self.heading = Some(level);
            }
            Tag::BlockQuote(_) => {
                self.flush_paragraph();
                self.prefix.push("│ ");
            }
            Tag::CodeBlock(_) => {
                self.flush_paragraph();
                self.in_code_block = true;
            }
            Tag::List(start) => {
                self.flush_paragraph();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush_paragraph();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_owned(),
                };
                self.item_marker = Some(marker);
            }
            Tag::Link { dest_url, .. } => self.open_links.push(clean(&dest_url)),
            Tag::Image { dest_url, .. } => {
                self.pending.push_str("[image: ");
                self.open_links.push(clean(&dest_url));
            }
            Tag::TableRow | Tag::TableHead => self.flush_paragraph(),
            Tag::TableCell => self.pending.push_str("| "),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                self.flush_paragraph();
                if self.item_marker.is_none() && self.lists.is_empty() {
                    self.lines.push(String::new());
                }
            }
            TagEnd::Heading(_) => {
                let level = self.heading.take();
                self.take_pending();
                let text = self.words.join(" ");
                self.words.clear();
                let underline = match level {
                    Some(HeadingLevel::H1) => Some('='),
                    Some(HeadingLevel::H2) => Some('-'),
                    _ => None,
                };
                let text = match underline {
                    Some(_) => text,
                    None => format!("### {text}"),
                };
                let w = UnicodeWidthStr::width(text.as_str()).min(self.width);
                self.lines.push(text);
                if let Some(c) = underline {
                    self.lines.push(c.to_string().repeat(w.max(3)));
                }
                self.lines.push(String::new());
            }
            TagEnd::BlockQuote(_) => {
                self.flush_paragraph();
                self.prefix.pop();
            }
            TagEnd::CodeBlock => {
                self.in_code_block = false;
                self.lines.push(String::new());
            }
            TagEnd::List(_) => {
                self.flush_paragraph();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.lines.push(String::new());
                }
            }
            TagEnd::Item => self.flush_paragraph(),
            TagEnd::Link | TagEnd::Image => {
                if let Some(target) = self.open_links.pop() {
                    self.refs.push(target);
                    let close = if matches!(tag, TagEnd::Image) {
                        "]"
                    } else {
                        ""
                    };
                    self.pending
                        .push_str(&format!("{close}[{}]", self.refs.len()));
                }
            }
            TagEnd::TableCell => self.pending.push(' '),
            TagEnd::TableRow | TagEnd::TableHead => {
                self.pending.push('|');
                self.flush_paragraph();
            }
            TagEnd::Table => {
                self.flush_paragraph();
                self.lines.push(String::new());
            }
            _ => {}
        }
    }

    fn prefix_string(&self) -> String {
        let mut p: String = self.prefix.concat();
        // List items nested in lists indent by two columns per level.
        p.push_str(&"  ".repeat(self.lists.len().saturating_sub(1)));
        p
    }

    fn take_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.words
            .extend(pending.split_whitespace().map(str::to_owned));
    }

    /// Wraps the collected words into lines under the current prefixes.
    fn flush_paragraph(&mut self) {
        self.take_pending();
        if self.words.is_empty() {
            return;
        }
        let base = self.prefix_string();
        let marker = self.item_marker.take();
        let first_prefix = format!("{base}{}", marker.as_deref().unwrap_or(""));
        let rest_prefix = format!(
            "{base}{}",
            " ".repeat(marker.as_deref().map_or(0, UnicodeWidthStr::width))
        );
        let mut line = first_prefix.clone();
        let mut line_has_word = false;
        for word in self.words.drain(..) {
            let needed = UnicodeWidthStr::width(line.as_str())
                + usize::from(line_has_word)
                + UnicodeWidthStr::width(word.as_str());
            if line_has_word && needed > self.width {
                self.lines
                    .push(std::mem::replace(&mut line, rest_prefix.clone()));
                line_has_word = false;
            }
            if line_has_word {
                line.push(' ');
            }
            line.push_str(&word);
            line_has_word = true;
        }
        self.lines.push(line);
    }

    fn finish(mut self) -> String {
        while self.lines.last().is_some_and(String::is_empty) {
            self.lines.pop();
        }
        if !self.refs.is_empty() {
            self.lines.push(String::new());
            self.lines.push("References".to_owned());
            for (i, target) in self.refs.iter().enumerate() {
                self.lines.push(format!("[{}] {target}", i + 1));
            }
        }
        let mut text = self.lines.join("\n");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ArticleHeader<'static> {
        ArticleHeader {
            title: "Title",
            author: "Author",
            date: "2026-11-20",
            language: "en",
        }
    }

    #[test]
    fn renders_headings_lists_and_numbered_links() {
        let md = "---\ntitle: T\n---\n# Big news\n\nRead [the report](https://example.org/r) now.\n\n- one\n- two\n\n![map](images/m.png)\n";
        let text = render_article(&header(), md, RenderOptions::default());
        assert!(text.contains("Big news\n========"), "{text}");
        assert!(text.contains("Read the report[1] now."), "{text}");
        assert!(text.contains("• one\n• two"), "{text}");
        assert!(text.contains("[image: map][2]"), "{text}");
        assert!(
            text.contains("[1] https://example.org/r\n[2] images/m.png"),
            "{text}"
        );
        assert!(
            !text.contains("title: T"),
            "front matter must be skipped: {text}"
        );
    }

    #[test]
    fn wraps_at_width_and_keeps_words_whole() {
        let md = "word ".repeat(100);
        let text = render_article(&header(), &md, RenderOptions { width: 30 });
        for line in text.lines() {
            assert!(UnicodeWidthStr::width(line) <= 30, "{line:?}");
        }
        assert_eq!(text.matches("word").count(), 100);
    }

    #[test]
    fn terminal_escapes_and_bidi_overrides_are_removed() {
        let md = "evil \u{1b}]0;pwned\u{7} \u{1b}[2J text \u{202E}gnp.exe\n";
        let hostile = ArticleHeader {
            title: "t\u{1b}[31m",
            ..header()
        };
        let text = render_article(&hostile, md, RenderOptions::default());
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(!text.contains('\u{7}'), "{text:?}");
        assert!(!text.contains('\u{202E}'), "{text:?}");
    }

    #[test]
    fn right_to_left_text_passes_through() {
        let md = "# خبر\n\nیہ ایک مضمون ہے۔\n";
        let text = render_article(&header(), md, RenderOptions::default());
        assert!(text.contains("یہ ایک مضمون ہے۔"), "{text}");
    }
}
