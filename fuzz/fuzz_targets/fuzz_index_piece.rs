//! Index pieces: `index::validate_piece` (what the push endpoint runs on a pushed piece) and
//! the log decoder behind it, reached the way readers and sync reach it: a tracker offered a
//! head (signed here with the test key) that lists the fuzzed bytes as its piece, which then
//! checks and decodes the piece against that reference (`decode_piece` via `supply`).
//!
//! Invariants: refusals are verification errors with printable messages; a valid piece's
//! reference has its sha256 and size, at least one entry and a range inside the log limit; its
//! entries re-encode to exactly its bytes; and the two paths agree: a piece starting at entry
//! 0 that validates is accepted by the tracker with the same entries, and the reverse.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use qasid::content_id::ContentId;
use qasid::index::{
    current_positions, encode_piece, validate_piece, EncodedPiece, Entry, Head, HeadFields, LogRef,
    Offer, PieceRef, SignedHead, Tracker,
};
use qasid::limits::IndexLimits;
use qasid::ErrorClass;
use qasid_fuzz::{assert_printable, public_key, secret_key};

fuzz_target!(|data: &[u8]| {
    let limits = IndexLimits::default();
    let validated = match validate_piece(data, public_key(), &limits) {
        Ok(reference) => {
            check_valid(data, &reference, &limits);
            Some(reference)
        }
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::Verification, "{e:?}");
            assert_printable("piece error", &e.to_string());
            None
        }
    };

    // The reader's path: a signed head listing these bytes as entries 0..count.
    let count = loose_count(data);
    let Some(tracked) = through_tracker(data, count, &limits) else {
        return;
    };
    match (&validated, tracked) {
        (Some(reference), Ok(entries)) => {
            assert_eq!(reference.first, 0);
            assert_eq!(entries.len() as u64, reference.count);
            assert_eq!(encode_piece(public_key(), 0, &entries), data);
        }
        (Some(reference), Err(e)) if reference.first == 0 && reference.count == count => {
            panic!("validate_piece accepted a piece the tracker refused: {e}")
        }
        (None, Ok(_)) => panic!("the tracker accepted a piece validate_piece refused"),
        (_, Err(e)) => assert_printable("tracked piece error", &e.to_string()),
    }
});

fn check_valid(data: &[u8], reference: &PieceRef, limits: &IndexLimits) {
    assert_eq!(reference.sha256, ContentId::of_bytes(data));
    assert_eq!(reference.size, data.len() as u64);
    assert!(reference.count >= 1);
    assert!(reference.first.checked_add(reference.count).unwrap() <= limits.max_entries);
    // What the piece holds, read back through a head naming it: must re-encode byte for byte.
    let wire: serde_json::Value = serde_json::from_slice(data).expect("valid piece is JSON");
    let entries = wire["entries"].as_array().expect("entries array");
    assert_eq!(entries.len() as u64, reference.count);
    assert_eq!(wire["first"].as_u64(), Some(reference.first));
}

/// The number of entries the bytes claim, read loosely (1 if unreadable).
fn loose_count(data: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["entries"].as_array().map(|a| a.len() as u64))
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// Offers a tracker a head whose only piece is `data` (entries `0..count`) and supplies the
/// piece when asked. `None` if no head could list it (too large).
fn through_tracker(
    data: &[u8],
    count: u64,
    limits: &IndexLimits,
) -> Option<Result<Vec<Entry>, qasid::index::IndexError>> {
    let reference = PieceRef {
        sha256: ContentId::of_bytes(data),
        size: data.len() as u64,
        first: 0,
        count,
    };
    let log = LogRef::new(count, vec![reference], reference, limits).ok()?;
    let issued = SystemTime::now() - Duration::from_secs(60);
    let head = Head::new(
        HeadFields {
            publisher: public_key().clone(),
            sequence: 1,
            issued,
            expires: issued + Duration::from_secs(86_400),
            previous: None,
            mirrors: Vec::new(),
            log,
        },
        limits,
    )
    .expect("head fields are valid");
    let signed = SignedHead::sign(head, secret_key()).expect("sign");
    let mut tracker = Tracker::ephemeral(public_key(), limits.clone());
    let Offer::Update(mut pending) = tracker
        .offer(signed.envelope(), SystemTime::now())
        .expect("a fresh signed head is offered")
    else {
        panic!("an empty tracker did not ask for an update");
    };
    let update = (|| loop {
        let needed = pending.needed()?;
        if needed.is_empty() {
            return pending.finish();
        }
        for piece in needed {
            assert_eq!(piece, reference, "the tracker asked for an unlisted piece");
            pending.supply(&piece, data.to_vec())?;
        }
    })();
    let result = update.and_then(|update| Ok(tracker.accept(update)?.entries().to_vec()));
    if let Ok(entries) = &result {
        for (name, &i) in current_positions(entries).iter() {
            assert!(matches!(&entries[i], Entry::Add(a) if a.name() == *name));
        }
        assert_eq!(EncodedPiece::new(public_key(), 0, entries).bytes, data);
    }
    Some(result)
}
