//! Reader web pages: the home page listing publishers and their current articles, an article
//! page with its verification facts, and error pages, as complete HTML documents.
//!
//! Pure functions from plain data to `String`: no I/O, no HTTP types (the mirror's server
//! mounts them). Every page is self-contained and script-free: one inline style sheet, system
//! fonts, images only from the bundle being read, nothing from any other origin, so reading a
//! page tells no third party who reads what. Every string from a bundle, an index or the
//! configuration is escaped (`pages/html.rs`); article Markdown is sanitised (the policy is
//! in `pages/markdown.rs`). Pages are right-to-left where the article's language is.
//!
//! This module never verifies anything: the server builds an [`ArticlePage`] only from a
//! verified bundle, and the page states what that verification established and how a reader
//! can repeat it without trusting the mirror.

mod html;
mod layout;
mod markdown;
mod urls;

use std::collections::HashSet;

pub use urls::{
    article_url, asset_url, bundle_url, minisig_url, reader_page_url, READER_PAGE_PATH,
};

use crate::content_id::ContentId;
use crate::keys::PublicKey;
use html::Text;
use layout::Direction;

/// The Content-Security-Policy for every reader page: nothing may load but images from the
/// mirror itself and the page's own inline style; no script, no frames, no fonts, no
/// connections, no form submissions, no `<base>` rewriting.
///
/// Pages also carry it as `<meta http-equiv="Content-Security-Policy" content="…">`, which
/// protects a page saved to disk, but the server should send it as a real
/// `Content-Security-Policy` header on every page response (the header is the authoritative
/// form). Bundle files served under [`asset_url`] should get `default-src 'none'; sandbox`
/// with `X-Content-Type-Options: nosniff`, so an HTML or SVG file inside a bundle opened
/// directly cannot run script on the mirror's origin either.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// About the mirror serving the pages.
#[derive(Debug, Clone)]
pub struct SiteInfo {
    /// Shown as the home page's heading and title, e.g. "qasid mirror (Frankfurt)".
    pub name: String,
}

/// One publisher on the home page, from its current verified index.
#[derive(Debug, Clone)]
pub struct PublisherListing {
    pub publisher: PublicKey,
    /// A display name from the mirror's configuration; the key id is shown without one.
    pub name: Option<String>,
    /// The index head's sequence number.
    pub sequence: u64,
    /// When the index was issued and when it expires, as the index states them.
    pub issued: String,
    pub expires: String,
    /// The index has expired: its articles are shown with a "stale" warning, since newer ones
    /// may exist that this mirror has not received.
    pub expired: bool,
    /// Shown in the order given.
    pub articles: Vec<ArticleListing>,
    /// The mirrors the signed index lists, so a reader can go on when this mirror is blocked.
    pub mirrors: Vec<String>,
}

/// One current article version in a publisher's index.
#[derive(Debug, Clone)]
pub struct ArticleListing {
    pub name: String,
    pub version: u64,
    pub title: String,
    pub date: String,
    pub language: String,
    pub bundle_sha256: ContentId,
}

/// Everything an article page shows, taken from a verified bundle.
#[derive(Debug, Clone)]
pub struct ArticlePage {
    /// The key that signed the manifest.
    pub publisher: PublicKey,
    /// A display name from the mirror's configuration, if any.
    pub publisher_name: Option<String>,
    /// The manifest's bundle name (`[a-z0-9-]`, so it is also safe in a file name).
    pub name: String,
    pub version: u64,
    pub title: String,
    pub author: String,
    /// The manifest's date, `YYYY-MM-DD`: the date the verification line says it was signed.
    pub date: String,
    pub language: String,
    /// The sha256 of the bundle file: its content hash and download name.
    pub bundle_sha256: ContentId,
    pub bundle_size: u64,
    /// The sha256 of the signed `manifest.json` bytes.
    pub manifest_sha256: ContentId,
    /// The manifest's file paths: the only files the article may show or link to.
    pub files: Vec<String>,
    /// Files of the bundle a reader would not otherwise see on the page (not images, not
    /// `article.md`), listed under the article with their size and type.
    pub attachments: Vec<Attachment>,
    /// The mirrors the publisher's signed index lists.
    pub mirrors: Vec<String>,
    /// `article.md`, front matter included.
    pub markdown: String,
}

/// A file of the bundle listed under the article.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The manifest path.
    pub path: String,
    pub size: u64,
    /// The content type it is served with.
    pub content_type: String,
}

/// The publisher's mirrors, from its signed index, so that a reader whose way to this mirror
/// is blocked can find the next one. Only `http`/`https` URLs become links (the index allows
/// no other, but this module trusts no input); each is escaped all the same. Empty when the
/// index lists none.
fn mirrors_section(mirrors: &[String]) -> String {
    if mirrors.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section class=\"mirrors\" lang=\"en\" dir=\"ltr\">\n<h2>Mirrors of this publisher</h2>\n\
         <p class=\"meta\">The publisher's signed index lists these mirrors. Each serves the \
         same signed articles: if this one is blocked, try another.</p>\n<ul>\n",
    );
    for m in mirrors {
        match urls::web_url(m) {
            Some(url) => out.push_str(&format!(
                "<li><a href=\"{0}\" rel=\"noopener noreferrer nofollow\">{0}</a></li>\n",
                Text(&url)
            )),
            None => out.push_str(&format!("<li><code>{}</code></li>\n", Text(m))),
        }
    }
    out.push_str("</ul>\n</section>\n");
    out
}

/// The home page: every publisher (name or key id, index sequence and dates, a "stale" badge
/// if the index expired) with its current articles linked to their pages.
pub fn home_page(site: &SiteInfo, publishers: &[PublisherListing]) -> String {
    let mut main = format!(
        "<h1>{}</h1>\n<p>Articles here are signed by their publishers. This mirror only copies \
         them and cannot change a word: every article page shows the signature check and how to \
         repeat it yourself. The <a href=\"{reader}\">verifying reader</a> checks every \
         signature in your browser instead.</p>\n",
        Text(&site.name),
        reader = READER_PAGE_PATH,
    );
    if publishers.is_empty() {
        main.push_str("<p>This mirror carries no publishers yet.</p>\n");
    }
    for listing in publishers {
        main.push_str(&publisher_section(listing));
    }
    layout::document("en", &site.name, &main)
}

fn publisher_section(p: &PublisherListing) -> String {
    let id = p.publisher.id();
    let heading = match &p.name {
        Some(name) => Text(name).to_string(),
        None => format!("Publisher {id}"),
    };
    let badge = if p.expired {
        "<span class=\"badge stale\">stale</span>"
    } else {
        ""
    };
    let mut out = format!(
        "<section class=\"publisher\">\n<h2>{heading}{badge}</h2>\n\
         <p class=\"meta\">key <code>{id}</code> · index {sequence} · issued {issued} · \
         expires {expires}</p>\n",
        sequence = p.sequence,
        issued = Text(&p.issued),
        expires = Text(&p.expires),
    );
    if p.expired {
        out.push_str(&format!(
            "<p class=\"meta\">This publisher's index expired on {}. This mirror has not \
             received a newer one, so newer articles may be missing here.</p>\n",
            Text(&p.expires)
        ));
    }
    if p.articles.is_empty() {
        out.push_str("<p class=\"meta\">No articles.</p>\n");
    } else {
        out.push_str("<ul class=\"articles\">\n");
        for a in &p.articles {
            let sha = a.bundle_sha256.to_hex();
            out.push_str(&format!(
                "<li><a class=\"title\" href=\"{href}\" lang=\"{lang}\" dir=\"{dir}\">{title}</a>\
                 <br><span class=\"meta\">{date} · {lang} · version {version} · bundle \
                 <code title=\"{sha}\">{short}…</code></span></li>\n",
                href = Text(&article_url(&p.publisher, &a.name, a.version)),
                lang = Text(&a.language),
                dir = Direction::of(&a.language).attr(),
                title = Text(&a.title),
                date = Text(&a.date),
                version = a.version,
                short = &sha[..16],
            ));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&mirrors_section(&p.mirrors));
    out.push_str("</section>\n");
    out
}

/// An article: its rendered, sanitised body in the article's direction, the web links it
/// contains, and the verification box with downloads and the commands to check them.
pub fn article_page(a: &ArticlePage) -> String {
    let direction = Direction::of(&a.language);
    let body = markdown::render(
        &a.markdown,
        markdown::Assets {
            publisher: a.publisher.clone(),
            name: a.name.clone(),
            version: a.version,
            files: a.files.iter().cloned().collect::<HashSet<_>>(),
        },
        &a.title,
    );
    let mut main = format!(
        "<article lang=\"{lang}\" dir=\"{dir}\">\n<header>\n<h1>{title}</h1>\n\
         <p class=\"byline\">{author} · <time dir=\"ltr\">{date}</time></p>\n</header>\n{body}\n</article>\n",
        lang = Text(&a.language),
        dir = direction.attr(),
        title = Text(&a.title),
        author = Text(&a.author),
        date = Text(&a.date),
        body = body.html,
    );
    if !body.web_links.is_empty() {
        main.push_str(
            "<section class=\"links\" lang=\"en\" dir=\"ltr\">\n<h2>Links in this article</h2>\n\
             <p class=\"meta\">Where the article's links lead, whatever their text says. They \
             leave this mirror.</p>\n<ol>\n",
        );
        for link in &body.web_links {
            main.push_str(&format!(
                "<li><a href=\"{0}\" rel=\"noopener noreferrer nofollow\">{0}</a></li>\n",
                Text(link)
            ));
        }
        main.push_str("</ol>\n</section>\n");
    }
    if !a.attachments.is_empty() {
        main.push_str(
            "<section class=\"attachments\" lang=\"en\" dir=\"ltr\">\n<h2>Files with this \
             article</h2>\n<ul>\n",
        );
        for f in &a.attachments {
            main.push_str(&format!(
                "<li><a href=\"{href}\" download>{path}</a> <span class=\"meta\">{size} · \
                 {kind}</span></li>\n",
                href = Text(&asset_url(&a.publisher, &a.name, a.version, &f.path)),
                path = Text(&f.path),
                size = size_text(f.size),
                kind = Text(&f.content_type),
            ));
        }
        main.push_str("</ul>\n</section>\n");
    }
    main.push_str(&verification_box(a));
    main.push_str(&format!(
        "<p class=\"reader\" lang=\"en\" dir=\"ltr\">Or read this article in the \
         <a href=\"{}\">verifying reader</a>, which checks every signature in your browser \
         instead of trusting this mirror.</p>\n",
        Text(&reader_page_url(&a.name)),
    ));
    main.push_str(&mirrors_section(&a.mirrors));
    layout::document(&a.language, &a.title, &main)
}

fn verification_box(a: &ArticlePage) -> String {
    let id = a.publisher.id();
    let key = a.publisher.to_base64();
    let sha = a.bundle_sha256;
    let file = format!("{}-v{}.zip", a.name, a.version);
    let publisher = match &a.publisher_name {
        Some(name) => format!("{} (key id <code>{id}</code>)", Text(name)),
        None => format!("key id <code>{id}</code>"),
    };
    format!(
        "<section class=\"verify\" lang=\"en\" dir=\"ltr\">\n\
         <p class=\"verified\"><strong>verified:</strong> signed by <code>{id}</code> on {date}, \
         content hash <code class=\"hash\">{sha}</code></p>\n\
         <dl>\n\
         <dt>publisher</dt><dd>{publisher}</dd>\n\
         <dt>public key</dt><dd><code class=\"hash\">{key}</code></dd>\n\
         <dt>bundle sha256</dt><dd><code class=\"hash\">{sha}</code></dd>\n\
         <dt>manifest sha256</dt><dd><code class=\"hash\">{manifest}</code></dd>\n\
         <dt>bundle size</dt><dd>{size}</dd>\n\
         </dl>\n\
         <p>Download: <a href=\"{bundle_url}\" download=\"{file}\">{file}</a> · \
         <a href=\"{minisig_url}\" download=\"{file}.minisig\">{file}.minisig</a> (signature)</p>\n\
         <h2>How to verify independently</h2>\n\
         <p>This mirror checked the signature before showing this page, but you need not trust \
         the mirror. Save both downloads in one folder and check the file's hash:</p>\n\
         <pre>sha256sum {file}</pre>\n\
         <p>The output must be exactly:</p>\n\
         <pre>{sha}  {file}</pre>\n\
         <p>Check the signature with qasid:</p>\n\
         <pre>qasid verify {file} --publisher {key}</pre>\n\
         <p>or with stock minisign, after saving these two lines as <code>publisher.pub</code>:</p>\n\
         <pre>{key_file}</pre>\n\
         <pre>minisign -Vm {file} -p publisher.pub</pre>\n\
         <p>A mirror could show you a key of its own: compare key id <code>{id}</code> with the \
         one the publisher gives through a channel you trust.</p>\n\
         </section>\n",
        date = Text(&a.date),
        manifest = a.manifest_sha256,
        size = size_text(a.bundle_size),
        bundle_url = Text(&bundle_url(&a.publisher, &sha)),
        minisig_url = Text(&minisig_url(&a.publisher, &sha)),
        file = Text(&file),
        key_file = Text(a.publisher.to_file_text().trim_end()),
    )
}

/// An error page: the status and a message for the reader. The message is shown as given
/// (escaped), so it must not carry internal detail.
pub fn error_page(status: u16, message: &str) -> String {
    let title = format!("Error {status}");
    let main = format!("<h1>{title}</h1>\n<p>{}</p>\n", Text(message));
    layout::document("en", &title, &main)
}

fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    // Display rounding only: precision loss above 2^53 bytes does not matter here.
    match bytes {
        b if b < KIB => format!("{b} bytes"),
        b if b < MIB => format!("{:.1} KiB ({b} bytes)", b as f64 / KIB as f64),
        b => format!("{:.1} MiB ({b} bytes)", b as f64 / MIB as f64),
    }
}

#[cfg(test)]
mod tests;
