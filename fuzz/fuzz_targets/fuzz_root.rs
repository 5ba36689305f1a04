//! Publisher roots (`roots/<N>.json`): `Root::parse`, run on the input as it is (a root with
//! no signatures, or signatures the fuzzer copied from a seed, parses without the key), and
//! after a fix-up that re-signs whatever body parsed with the test key.
//!
//! Invariants: refusals are printable; an accepted root has exactly one spelling: its
//! canonical bytes are the input, and a body signed afresh round-trips byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qasid::roots::Root;
use qasid_fuzz::{assert_printable, secret_key};

fuzz_target!(|data: &[u8]| {
    match Root::parse(data) {
        Ok(root) => {
            assert_eq!(
                root.to_bytes(),
                data,
                "an accepted root re-encodes to other bytes"
            );
            // The fix-up: the same body, signed by the test key, must round-trip too.
            let Ok(mut fresh) = Root::unsigned(root.body().clone()) else {
                panic!("the body of an accepted root is refused on its own");
            };
            fresh.sign(secret_key());
            let bytes = fresh.to_bytes();
            let again = Root::parse(&bytes).expect("a freshly signed root parses");
            assert_eq!(again.to_bytes(), bytes);
            assert_eq!(again.id(), fresh.id());
        }
        Err(e) => assert_printable("root error", &e.to_string()),
    }
});
