//! The publisher id of a threshold root: a public key derived from root 1's payload, for which
//! nobody holds the secret key.
//!
//! A folder name, a head's and a piece's `publisher` member are all a public key, so the id of a
//! root with several keys is one too, but one that commits to the whole first root: whoever is
//! given only the id can fetch `roots/1.json` from any mirror and check it, and no single root
//! key holder can make another first root with the same id. The derivation is "try and
//! increment": `h = sha256("qasid-root-id-v1\n" ‖ payload ‖ counter)` for counter 0, 1, …;
//! the first `h` that decodes as an Edwards point `P` (RFC 8032 §5.1.3) with `8·P` not the
//! identity gives the id `8·P` (multiplying by the cofactor lands in the prime-order
//! subgroup, so the id is a valid, not small-order, verification key whose discrete log is
//! unknown).

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::traits::IsIdentity as _;
use sha2::{Digest as _, Sha256};

use crate::keys::PublicKey;

/// Domain separator of the derivation.
const ID_DOMAIN: &[u8] = b"qasid-root-id-v1\n";

/// Derives the id for root 1's `payload` (see the module documentation).
pub fn derive_publisher_id(payload: &[u8]) -> PublicKey {
    // Each try succeeds with probability about 1/2, so 256 tries fail with probability 2^-256.
    for counter in 0..=u8::MAX {
        let h: [u8; 32] = Sha256::new()
            .chain_update(ID_DOMAIN)
            .chain_update(payload)
            .chain_update([counter])
            .finalize()
            .into();
        let Some(point) = CompressedEdwardsY(h).decompress() else {
            continue;
        };
        let point = point.mul_by_cofactor();
        if point.is_identity() {
            continue;
        }
        if let Ok(key) = PublicKey::from_raw(&point.compress().to_bytes()) {
            return key;
        }
    }
    unreachable!("256 hash tries all failed to give a curve point")
}
