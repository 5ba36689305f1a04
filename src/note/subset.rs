//! Per-channel subsets of mirrors: one channel's note need not hand a censor every mirror.
//!
//! The choice is deterministic (the same label and list always give the same subset) and needs
//! no state: mirrors are ranked by sha256(label ‖ 0x00 ‖ URL) and the first `n` are kept, in
//! the publisher's original order. Different labels give unrelated subsets.

use sha2::{Digest, Sha256};

use super::NoteMirror;

/// The `n` mirrors of `mirrors` chosen for the channel `label`, in their original order.
pub fn subset(mirrors: &[NoteMirror], label: &str, n: usize) -> Vec<NoteMirror> {
    let mut ranked: Vec<(usize, [u8; 32])> = mirrors
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut h = Sha256::new();
            h.update(label.as_bytes());
            h.update([0u8]);
            h.update(m.url.as_str().as_bytes());
            (i, h.finalize().into())
        })
        .collect();
    ranked.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<usize> = ranked.into_iter().take(n).map(|(i, _)| i).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| mirrors[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirrors(n: usize) -> Vec<NoteMirror> {
        (0..n)
            .map(|i| NoteMirror::parse(&format!("https://m{i}.example/")).unwrap())
            .collect()
    }

    #[test]
    fn deterministic_ordered_and_label_dependent() {
        let all = mirrors(12);
        let a = subset(&all, "telegram", 4);
        assert_eq!(a.len(), 4);
        assert_eq!(a, subset(&all, "telegram", 4));
        let positions: Vec<usize> = a
            .iter()
            .map(|m| all.iter().position(|x| x == m).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let others: Vec<Vec<NoteMirror>> = ["sms", "flyer", "dns", "email"]
            .iter()
            .map(|l| subset(&all, l, 4))
            .collect();
        assert!(
            others.iter().any(|o| o != &a),
            "labels give different subsets"
        );
        assert_eq!(subset(&all, "x", 50).len(), 12);
    }
}
