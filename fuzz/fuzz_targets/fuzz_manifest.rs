//! The manifest parser (`Manifest::parse`), fed the exact bytes of a bundle's `manifest.json`
//! as the verifier does once the signature checked.
//!
//! Invariants: a parsed manifest re-encodes to exactly the input bytes (one manifest, one
//! encoding), re-parses to itself, satisfies every manifest rule when re-checked
//! independently (`check_manifest_rules`), and rebuilding it with `Manifest::new` from its own
//! fields gives the same value; a refusal has a printable message. Anything accepted under
//! tiny limits is accepted under the defaults.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qasid::limits::BundleLimits;
use qasid::manifest::{Manifest, ManifestFields};
use qasid_fuzz::{assert_printable, check_manifest_rules};

fuzz_target!(|data: &[u8]| {
    let defaults = BundleLimits::default();
    let accepted = check(data, &defaults);
    let tiny = BundleLimits {
        max_entries: 3,
        max_manifest_bytes: 1024,
        max_file_bytes: 100,
        max_total_bytes: 150,
        max_path_bytes: 24,
        max_path_depth: 2,
        ..BundleLimits::default()
    };
    if check(data, &tiny) {
        assert!(
            accepted,
            "accepted under tiny limits but refused under the defaults"
        );
    }
});

fn check(data: &[u8], limits: &BundleLimits) -> bool {
    match Manifest::parse(data, limits) {
        Ok(manifest) => {
            assert_eq!(
                manifest.to_bytes(),
                data,
                "accepted manifest is not canonical"
            );
            assert_eq!(
                Manifest::parse(&manifest.to_bytes(), limits).unwrap(),
                manifest
            );
            check_manifest_rules(&manifest, limits);
            let fields = ManifestFields {
                publisher: manifest.publisher_key(),
                name: manifest.name().to_owned(),
                version: manifest.version(),
                created: manifest.created().to_owned(),
                title: manifest.title().to_owned(),
                author: manifest.author().to_owned(),
                language: manifest.language().to_owned(),
                files: manifest.files().iter().rev().cloned().collect(),
            };
            let rebuilt = Manifest::new(fields, limits).expect("a parsed manifest rebuilds");
            assert_eq!(rebuilt, manifest);
            true
        }
        Err(e) => {
            assert_printable("manifest error", &e.to_string());
            false
        }
    }
}
