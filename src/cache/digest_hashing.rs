//! A cheap hasher for maps keyed by SHA-256 digests.

use std::hash::{BuildHasher, Hasher};

/// Hashes keys that are SHA-256 digests (of tokens, under an upstream or with a client id) by
/// folding their bytes with one multiply per word, instead of SipHash. Flooding one bucket
/// (HashDoS) would take tokens whose digests collide in these bits: the tokens are chosen by
/// whoever presents them, but SHA-256's output is uniform, so choosing it is a preimage attack.
/// Not for keys an attacker controls directly (`claims` keeps SipHash).
#[derive(Debug, Clone, Copy, Default)]
pub struct DigestHashing;

impl BuildHasher for DigestHashing {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Debug)]
pub struct DigestHasher(u64);

impl DigestHasher {
    fn mix(&mut self, word: u64) {
        // An odd multiplier is a bijection on u64, so uniform input stays uniform.
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.mix(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.mix(word as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::CacheKey;
    use crate::vocabulary::SubjectToken;

    #[test]
    fn digests_that_differ_in_any_word_hash_apart() {
        let hash = |token: &str| DigestHashing.hash_one(SubjectToken::new(token.into()).digest());
        let upstream: Arc<str> = "idp".into();
        let key_hash = |token: &str| {
            DigestHashing.hash_one(CacheKey::new(Arc::clone(&upstream), SubjectToken::new(token.into()).digest()))
        };

        assert_ne!(hash("a"), hash("b"));
        assert_eq!(key_hash("a"), hash("a"));
    }
}
