//! The front matter parser (`article::parse`): the head of every `article.md`, read when a
//! publisher bundles a folder and when a reader renders a verified bundle.
//!
//! Invariants: a refusal names a line inside the text (or just past it) and is printable; an
//! accepted front matter has values that are non-empty, trimmed, single-line and free of
//! control characters, a real date and a language tag; the body is the text after the
//! closing line; writing the values back as front matter parses to the same article; and the
//! values make a valid manifest and (within the index's text limit) a valid index entry, as
//! the manifest module promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qasid::article;
use qasid::content_id::ContentId;
use qasid::index::{ArticleFields, ArticleVersion, ObjectRef};
use qasid::limits::{BundleLimits, IndexLimits};
use qasid::manifest::{EntryName, FileEntry, Manifest, ManifestFields};
use qasid_fuzz::{assert_printable, public_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match article::parse(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = e.to_string();
            assert_printable("front matter error", &message);
            let lines = text.split('\n').count();
            let line: usize = message
                .strip_prefix("line ")
                .and_then(|m| m.split(':').next())
                .and_then(|n| n.parse().ok())
                .expect("errors name a line");
            assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}");
            return;
        }
    };
    let fm = &parsed.front_matter;
    for value in [fm.title(), fm.author(), fm.date(), fm.language()] {
        assert!(!value.is_empty() && value.trim() == value);
        assert!(!value.chars().any(char::is_control), "{value:?}");
    }
    assert!(text.ends_with(parsed.body));
    let head = &text[..text.len() - parsed.body.len()];
    assert!(head.starts_with("---\n") && (head.ends_with("\n---\n") || head.ends_with("\n---")));

    let rewritten = format!(
        "---\ntitle: {}\nauthor: {}\ndate: {}\nlanguage: {}\n---\n{}",
        fm.title(),
        fm.author(),
        fm.date(),
        fm.language(),
        parsed.body
    );
    let again = article::parse(&rewritten).expect("rewritten front matter parses");
    assert_eq!(&again.front_matter, fm);
    assert_eq!(again.body, parsed.body);
    let _ = article::is_right_to_left(fm.language());

    let limits = BundleLimits::default();
    let article = FileEntry::new(
        EntryName::new("article.md", &limits).unwrap(),
        text.len() as u64,
        ContentId::of_bytes(data),
    );
    let manifest = Manifest::new(
        ManifestFields {
            publisher: public_key().clone(),
            name: "fuzz".into(),
            version: 1,
            created: fm.date().to_owned(),
            title: fm.title().to_owned(),
            author: fm.author().to_owned(),
            language: fm.language().to_owned(),
            files: vec![article],
        },
        &limits,
    )
    .expect("accepted front matter makes a valid manifest");
    assert_eq!(
        Manifest::parse(&manifest.to_bytes(), &limits).unwrap(),
        manifest
    );

    let index_limits = IndexLimits::default();
    if fm.title().len() <= index_limits.max_text_bytes
        && fm.author().len() <= index_limits.max_text_bytes
    {
        ArticleVersion::new(
            ArticleFields {
                name: "fuzz".into(),
                version: 1,
                title: fm.title().to_owned(),
                date: fm.date().to_owned(),
                language: fm.language().to_owned(),
                author: fm.author().to_owned(),
                bundle: ObjectRef {
                    sha256: ContentId::of_bytes(data),
                    size: 1,
                },
            },
            &index_limits,
        )
        .expect("accepted front matter makes a valid index entry");
    }
});
