//! The page shell every reader page shares: document head, the inline style sheet, the site
//! header, and the text direction of a language.
//!
//! Pages are self-contained: one HTML document with one inline `<style>`, no scripts, no
//! fonts, images or style sheets from anywhere else (system fonts only). The layout uses CSS
//! logical properties, so right-to-left pages mirror without separate rules. This module never
//! sees article Markdown: it wraps markup the page functions built and escapes the title.

use super::html::Text;
use super::CONTENT_SECURITY_POLICY;

/// Which way a language's text runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    LeftToRight,
    RightToLeft,
}

impl Direction {
    pub(super) fn of(language: &str) -> Self {
        if crate::article::is_right_to_left(language) {
            Direction::RightToLeft
        } else {
            Direction::LeftToRight
        }
    }

    /// The value of an HTML `dir` attribute.
    pub(super) fn attr(self) -> &'static str {
        match self {
            Direction::LeftToRight => "ltr",
            Direction::RightToLeft => "rtl",
        }
    }
}

/// A complete document: `<html lang dir>`, the head, the site header and `main` (markup).
pub(super) fn document(language: &str, title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n\
         <html lang=\"{lang}\" dir=\"{dir}\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n\
         <style>{STYLE}</style>\n\
         </head>\n\
         <body>\n\
         <header class=\"site\" lang=\"en\" dir=\"ltr\"><a href=\"/\">qasid · all articles</a></header>\n\
         <main>\n{main}</main>\n\
         </body>\n\
         </html>\n",
        lang = Text(language),
        dir = Direction::of(language).attr(),
        csp = Text(CONTENT_SECURITY_POLICY),
        title = Text(title),
    )
}

/// The one style sheet. Only logical properties for sides (`inline`/`block`, `start`/`end`),
/// so `dir="rtl"` mirrors the layout; the widest column is set in `rem` so it reads on phones.
/// Arabic-script languages list Arabic-script system fonts first: a Latin font with partial
/// Arabic coverage would otherwise win and leave letters like Urdu's ے in another font. The
/// English page furniture inside such a page goes back to the Latin stack.
const STYLE: &str = "
:root{color-scheme:light dark;--sans:system-ui,-apple-system,\"Segoe UI\",Roboto,\"Noto Sans\",\
\"DejaVu Sans\",sans-serif;--fg:#1c1c1a;--bg:#fbfbf8;--muted:#5b5b55;--link:#0b57a4;\
--box:#eef3ec;--line:#c5d3c2;--warn-bg:#fff1dc;--warn:#8a3d00}
@media (prefers-color-scheme:dark){:root{--fg:#e9e8e3;--bg:#151514;--muted:#a9a89f;\
--link:#8fc1ff;--box:#1e271d;--line:#3d4e3b;--warn-bg:#3a2a12;--warn:#ffc27a}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:1.0625rem/1.6 var(--sans)}
:lang(ar),:lang(fa),:lang(ps),:lang(sd),:lang(ckb),:lang(ug){line-height:1.9;\
font-family:\"Noto Naskh Arabic\",\"Noto Sans Arabic\",\"Geeza Pro\",Tahoma,system-ui,sans-serif}
:lang(ur){line-height:2.3;font-family:\"Noto Nastaliq Urdu\",\"Jameel Noori Nastaleeq\",\
\"Noto Naskh Arabic\",Tahoma,system-ui,sans-serif}
header.site,.links,.verify{font-family:var(--sans);line-height:1.6}
header.site{padding-block:.6rem;padding-inline:1rem;border-block-end:1px solid var(--line)}
header.site a{font-weight:600;text-decoration:none}
main{max-inline-size:42rem;margin-inline:auto;padding-block:1rem 3rem;padding-inline:1rem}
a{color:var(--link)}
h1{font-size:1.7rem;line-height:1.3;margin-block:1rem .5rem}
h2{font-size:1.3rem;line-height:1.35;margin-block:1.8rem .6rem}
h3,h4,h5,h6{font-size:1.1rem;margin-block:1.4rem .5rem}
img{max-inline-size:100%;block-size:auto}
blockquote{margin-inline:0;padding-inline-start:1rem;border-inline-start:.25rem solid var(--line);\
color:var(--muted)}
code,kbd,pre{font-family:ui-monospace,\"DejaVu Sans Mono\",Menlo,Consolas,monospace;font-size:.9em}
pre{padding:.7rem;background:var(--box);overflow-x:auto;white-space:pre;text-align:start}
table{border-collapse:collapse;display:block;overflow-x:auto}
th,td{border:1px solid var(--line);padding-block:.25rem;padding-inline:.5rem;text-align:start}
.meta,.byline{color:var(--muted);font-size:.92rem}
.hash{overflow-wrap:anywhere}
.badge{display:inline-block;padding-inline:.45rem;border-radius:.3rem;font-size:.8rem;\
font-weight:600;vertical-align:middle;margin-inline-start:.4rem}
.stale{background:var(--warn-bg);color:var(--warn);border:1px solid var(--warn)}
.publisher{border-block-start:1px solid var(--line);margin-block-start:1.5rem}
.articles{list-style:none;padding-inline-start:0}
.articles li{margin-block:.8rem}
.articles .title{font-size:1.1rem}
.verify{margin-block-start:2.5rem;padding:1rem;background:var(--box);border:1px solid var(--line);\
border-radius:.5rem;font-size:.95rem}
.verify h2{margin-block-start:1.2rem;font-size:1.1rem}
.verified{font-size:1.05rem;margin-block-start:0}
.verify dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem}
.verify dd{margin:0;min-inline-size:0}
.links ol{padding-inline-start:1.4rem;overflow-wrap:anywhere}
";
