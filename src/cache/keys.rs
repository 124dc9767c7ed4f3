//! Where everything lives in Redis. Every key about one token carries the token's digest as
//! its hash tag, `{prefix}:v2:{<sha256 hex>}:…`, so the entry, the revocation, the holder
//! records and the first sighting of a token sit in one Redis Cluster slot: a miss reads them
//! with one MGET and writes them with one pipeline, on any topology.

use super::CacheKey;
use crate::vocabulary::TokenDigest;

/// The key layout under one prefix. The prefix carries no `{` or `}` (config checks), so the
/// first brace pair of a key is always the hash tag put there on purpose.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// `{prefix}:v2:{<sha256 hex>}`: the start of every key about one token. A new kind of
    /// record about a token (a single-flight lease, say) appends its own `:name` to it.
    pub fn token(&self, digest: &TokenDigest) -> TokenKeys {
        TokenKeys(format!("{}:v2:{{{}}}", self.prefix, digest.to_hex()))
    }

    /// The verdict of `key`'s upstream on its token.
    pub fn entry(&self, key: &CacheKey) -> String {
        self.token(key.digest()).entry(key.upstream())
    }

    pub fn revoked(&self, digest: &TokenDigest) -> String {
        self.token(digest).revoked()
    }

    pub fn exchanged(&self, digest: &TokenDigest, client_id: &str) -> String {
        self.token(digest).exchanged(client_id)
    }

    /// A one-time claim, alone in its slot. Named as before hash tags: a claim made before an
    /// upgrade still refuses a replay after it.
    pub fn claim(&self, key: &str) -> String {
        format!("{}:v1:claim:{key}", self.prefix)
    }

    /// The entry keys of one subject, for purges, each scored by the Unix second its entry
    /// expires: written beside an entry, in another slot, and pruned of the dead as it is.
    pub fn subject(&self, subject_digest_hex: &str) -> String {
        format!("{}:v2:subject:{subject_digest_hex}", self.prefix)
    }

    /// The same index as a plain set, before it was scored: nothing pruned it, so it grew for
    /// as long as its subject kept missing. Still read by purges until it expires.
    pub fn unscored_subject(&self, subject_digest_hex: &str) -> String {
        format!("{}:v2:sub:{subject_digest_hex}", self.prefix)
    }

    /// The invalidation channel. Its messages did not change with the key layout, so the name
    /// did not either: replicas of both layouts hear each other during a rolling upgrade.
    pub fn channel(&self) -> String {
        format!("{}:v1:invalidate", self.prefix)
    }

    /// A SCAN pattern that matches the entries of `upstream` and nothing else: the hash tag
    /// is exactly 64 characters, and every glob character of the names is escaped.
    pub fn upstream_entries_pattern(&self, upstream: &str) -> String {
        format!("{}:v2:{{{}}}:id:{}", glob_escape(&self.prefix), "?".repeat(64), glob_escape(upstream))
    }
}

/// The keys of one token, its digest written once: they share its hash tag.
#[derive(Debug, Clone)]
pub struct TokenKeys(String);

impl TokenKeys {
    pub fn entry(&self, upstream: &str) -> String {
        format!("{}:id:{upstream}", self.0)
    }

    pub fn seen(&self, upstream: &str) -> String {
        format!("{}:seen:{upstream}", self.0)
    }

    pub fn revoked(&self) -> String {
        format!("{}:revoked", self.0)
    }

    pub fn exchanged(&self, client_id: &str) -> String {
        format!("{}:exchanged:{client_id}", self.0)
    }

    /// A replica's lease on asking `upstream` about the token (the fleet's single flight).
    pub fn lease(&self, upstream: &str) -> String {
        format!("{}:lease:{upstream}", self.0)
    }
}

/// The layout before hash tags (`{prefix}:v1:…`), still read and written for what must
/// survive an upgrade: revocations, revocation rights and first sightings. Only a standalone
/// Redis can hold these keys, the one topology of that version.
#[derive(Debug, Clone)]
pub struct LegacyKeys {
    prefix: String,
}

impl LegacyKeys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn revoked(&self, digest: &TokenDigest) -> String {
        format!("{}:v1:revoked:{}", self.prefix, digest.to_hex())
    }

    pub fn exchanged(&self, digest: &TokenDigest, client_id: &str) -> String {
        format!("{}:v1:exchanged:{}:{client_id}", self.prefix, digest.to_hex())
    }

    pub fn seen(&self, key: &CacheKey) -> String {
        format!("{}:v1:seen:{}", self.prefix, key.to_wire())
    }
}

fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::SubjectToken;

    fn digest() -> TokenDigest {
        SubjectToken::new("a-token".into()).digest()
    }

    /// Redis Cluster hashes the text between the first `{` and the next `}`.
    fn hash_tag(key: &str) -> &str {
        let start = key.find('{').map_or(0, |i| i + 1);
        let end = key[start..].find('}').map_or(key.len(), |i| start + i);
        &key[start..end]
    }

    #[test]
    fn every_key_of_a_token_shares_one_hash_tag() {
        let keys = RedisKeys::new("te");
        let key = CacheKey::new("idp", digest());
        let tag = digest().to_hex();
        let token = keys.token(&digest());
        for redis_key in
            [token.entry("idp"), token.seen("idp"), token.revoked(), token.exchanged("c"), token.lease("idp")]
        {
            assert_eq!(hash_tag(&redis_key), tag, "{redis_key}");
        }
        assert_eq!(keys.entry(&key), format!("te:v2:{{{tag}}}:id:idp"));
    }

    #[test]
    fn the_upstream_pattern_escapes_glob_characters_and_pins_the_tag_length() {
        let keys = RedisKeys::new("te*");
        assert_eq!(keys.upstream_entries_pattern("a?b"), format!("te\\*:v2:{{{}}}:id:a\\?b", "?".repeat(64)));
    }
}
