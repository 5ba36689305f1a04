use std::time::{Duration, SystemTime};

use super::*;
use crate::keys::Domain;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn far() -> SystemTime {
    humantime::parse_rfc3339("2100-01-01T00:00:00Z").unwrap()
}

fn sorted(mut keys: Vec<PublicKey>) -> Vec<PublicKey> {
    keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    keys
}

fn body(version: u64, threshold: u64, roots: &[u8], signing: &[u8]) -> RootBody {
    let mut signing_keys: Vec<Delegation> = signing
        .iter()
        .map(|s| Delegation {
            key: key(*s).public().clone(),
            roles: Role::ALL.to_vec(),
            expires: far(),
        })
        .collect();
    signing_keys.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    RootBody {
        version,
        previous: None,
        threshold,
        root_keys: sorted(roots.iter().map(|r| key(*r).public().clone()).collect()),
        signing_keys,
    }
}

/// The body of the root after `prev`, naming it as previous.
fn after(prev: &Root, threshold: u64, roots: &[u8], signing: &[u8]) -> RootBody {
    RootBody {
        version: prev.version() + 1,
        previous: Some(prev.id()),
        ..body(1, threshold, roots, signing)
    }
}

/// A chain's folders inside `dir`.
fn storage(dir: &std::path::Path) -> ChainStorage {
    ChainStorage {
        dir: dir.join("roots"),
        tmp: dir.to_owned(),
        evidence: dir.join("evidence"),
    }
}

fn signed(body: RootBody, by: &[u8]) -> Root {
    let mut root = Root::unsigned(body).unwrap();
    for s in by {
        root.sign(&key(*s));
    }
    root
}

#[test]
fn the_file_round_trips_and_any_other_spelling_is_refused() {
    let root = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    let bytes = root.to_bytes();
    assert_eq!(Root::parse(&bytes).unwrap(), root);
    let spaced = String::from_utf8(bytes.clone())
        .unwrap()
        .replacen(",", ", ", 1);
    assert!(matches!(
        Root::parse(spaced.as_bytes()),
        Err(RootError::NonCanonical)
    ));
    let mut no_newline = bytes.clone();
    no_newline.pop();
    assert!(matches!(
        Root::parse(&no_newline),
        Err(RootError::NonCanonical)
    ));
}

#[test]
fn a_one_key_root_keeps_the_key_as_id_and_a_threshold_root_derives_one() {
    let one = signed(body(1, 1, &[1], &[9]), &[1]);
    assert_eq!(&one.publisher_id(), key(1).public());
    let three = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    let id = three.publisher_id();
    assert!(![1u8, 2, 3].iter().any(|s| key(*s).public() == &id));
    assert_eq!(id, derive_publisher_id(three.payload()));
    three.verify_first(&id).unwrap();
    // Another publisher's root 1 is refused, naming both by key id (the name the CLI shows),
    // never by the 64-hex folder name.
    let message = three.verify_first(key(1).public()).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "root 1 belongs to publisher {}, not to the trusted publisher {}",
            id.id(),
            key(1).public().id()
        )
    );
    assert!(!message.contains(&id.hex()), "{message}");
}

#[test]
fn below_threshold_and_stray_signatures_are_refused() {
    let one_of_three = signed(body(1, 2, &[1, 2, 3], &[9]), &[1]);
    let id = one_of_three.publisher_id();
    assert!(matches!(
        one_of_three.verify_first(&id),
        Err(RootError::BelowThreshold { found: 1, .. })
    ));
    let stray = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2, 7]);
    assert!(matches!(
        stray.verify_first(&stray.publisher_id()),
        Err(RootError::StraySignature { .. })
    ));
}

#[test]
fn a_successor_needs_both_thresholds() {
    let r1 = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    // New root keys 4, 5 (threshold 2): signed only by the new keys.
    let only_new = signed(after(&r1, 2, &[4, 5], &[9]), &[4, 5]);
    assert!(matches!(
        only_new.verify_successor(&r1),
        Err(RootError::BelowThreshold { .. } | RootError::StraySignature { .. })
    ));
    let both = signed(after(&r1, 2, &[4, 5], &[9]), &[1, 2, 4, 5]);
    both.verify_successor(&r1).unwrap();
    let mut skipped = after(&r1, 2, &[1, 2, 3], &[9]);
    skipped.version = 3;
    let skipped = signed(skipped, &[1, 2]);
    assert!(matches!(
        skipped.verify_successor(&r1),
        Err(RootError::WrongVersion { .. })
    ));
}

#[test]
fn the_authority_holds_only_unexpired_keys_of_a_role() {
    let mut b = body(1, 1, &[1], &[8, 9]);
    b.signing_keys[0].roles = vec![Role::Bundle];
    let bundle_only = b.signing_keys[0].key.clone();
    let other = b.signing_keys[1].key.clone();
    b.signing_keys[1].expires = humantime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
    let root = signed(b, &[1]);
    let before = humantime::parse_rfc3339("2029-01-01T00:00:00Z").unwrap();
    let auth = Authority::from_root(key(1).public(), &root, before);
    assert_eq!(auth.signers(Role::Index), std::slice::from_ref(&other));
    assert_eq!(auth.signers(Role::Bundle).len(), 2);
    let after = before + Duration::from_secs(2 * 365 * 86400);
    let auth = Authority::from_root(key(1).public(), &root, after);
    assert!(auth.signers(Role::Index).is_empty());
    assert_eq!(
        auth.signers(Role::Bundle),
        std::slice::from_ref(&bundle_only)
    );
    let sig = key(8).sign(Domain::IndexHead, b"x");
    assert!(auth
        .verify_as(Role::Index, Domain::IndexHead, b"x", &sig)
        .is_err());
}

#[test]
fn a_chain_stores_roots_and_refuses_rollback_and_equivocation() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let r1 = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    let id = r1.publisher_id();
    let mut chain = Chain::open(&id, Some(storage.clone())).unwrap();
    assert_eq!(chain.offer(&r1.to_bytes()).unwrap(), Offered::Accepted(1));
    let r2 = signed(after(&r1, 2, &[1, 2, 3], &[10]), &[1, 3]);
    assert_eq!(chain.offer(&r2.to_bytes()).unwrap(), Offered::Accepted(2));
    assert_eq!(chain.offer(&r1.to_bytes()).unwrap(), Offered::Unchanged);
    // A different version 2 signed by a threshold: equivocation, with evidence.
    let fork = signed(after(&r1, 2, &[1, 2, 3], &[11]), &[2, 3]);
    let err = chain.offer(&fork.to_bytes()).unwrap_err();
    let RootError::Equivocation {
        evidence: Some(path),
        ..
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(path.join("held.json").is_file() && path.join("new.json").is_file());
    // Offering it again does not add a second folder.
    chain.offer(&fork.to_bytes()).unwrap_err();
    assert_eq!(std::fs::read_dir(&storage.evidence).unwrap().count(), 1);
    // An older root signed by one key only: a rollback attempt, not evidence.
    let forged = signed(after(&r1, 2, &[1, 2, 3], &[12]), &[1]);
    assert!(matches!(
        chain.offer(&forged.to_bytes()),
        Err(RootError::Rollback { .. })
    ));
    let reopened = Chain::open(&id, Some(storage)).unwrap();
    assert_eq!(reopened.version(), 2);
    assert_eq!(
        reopened
            .authority(far() - Duration::from_secs(1))
            .signers(Role::Index),
        &[key(10).public().clone()]
    );
}

#[test]
fn a_root_made_on_a_fork_does_not_chain_and_walking_finds_the_fork() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let r1 = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    let r2 = signed(after(&r1, 2, &[1, 2, 3], &[10]), &[1, 2]);
    let mut chain = Chain::open(&r1.publisher_id(), Some(storage.clone())).unwrap();
    chain.offer(&r1.to_bytes()).unwrap();
    chain.offer(&r2.to_bytes()).unwrap();
    // A coerced threshold signs another root 2 and a root 3 on top of it: the same root keys
    // sign root 3, but it names the fork's root 2, so it does not chain onto the held one.
    let fork2 = signed(after(&r1, 2, &[1, 2, 3], &[11]), &[2, 3]);
    let fork3 = signed(after(&fork2, 2, &[1, 2, 3], &[12]), &[2, 3]);
    assert!(matches!(
        chain.offer(&fork3.to_bytes()),
        Err(RootError::WrongPrevious { version: 3, .. })
    ));
    // Walking a source that serves the fork: asking it for root 2 again proves equivocation.
    let served = |v: u64| match v {
        1 => Some(r1.to_bytes()),
        2 => Some(fork2.to_bytes()),
        3 => Some(fork3.to_bytes()),
        _ => None,
    };
    assert!(matches!(
        chain.walk_now(served),
        Err(RootError::Equivocation {
            version: 2,
            evidence: Some(_)
        })
    ));
    assert_eq!(chain.version(), 2);
    // A root 2 without `previous` is not a root at all (the parser refuses it).
    let mut text = String::from_utf8(r2.to_bytes()).unwrap();
    let at = text.find(",\"previous\"").unwrap();
    text.replace_range(at..at + 78, "");
    assert!(matches!(
        Root::parse(text.as_bytes()),
        Err(RootError::Malformed(_))
    ));
}

#[test]
fn equivocation_evidence_is_bounded_per_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path());
    let r1 = signed(body(1, 2, &[1, 2, 3], &[9]), &[1, 2]);
    let mut chain = Chain::open(&r1.publisher_id(), Some(storage.clone())).unwrap();
    chain.offer(&r1.to_bytes()).unwrap();
    chain
        .offer(&signed(after(&r1, 2, &[1, 2, 3], &[10]), &[1, 2]).to_bytes())
        .unwrap();
    let forks = crate::limits::MAX_ROOT_EVIDENCE as u8 + 4;
    for s in 0..forks {
        let fork = signed(after(&r1, 2, &[1, 2, 3], &[20 + s]), &[2, 3]);
        assert!(matches!(
            chain.offer(&fork.to_bytes()),
            Err(RootError::Equivocation { .. })
        ));
    }
    assert_eq!(
        std::fs::read_dir(&storage.evidence).unwrap().count(),
        crate::limits::MAX_ROOT_EVIDENCE
    );
}
