use std::collections::BTreeSet;

/// One scope token (RFC 6749 §3.3): `1*( %x21 / %x23-5B / %x5D-7E )`, case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScopeToken(String);

impl ScopeToken {
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty() && text.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A set of scopes, kept sorted so equal sets print equally.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<ScopeToken>);

impl ScopeSet {
    /// Parses a space-delimited `scope` value; `None` when any token is malformed.
    pub fn parse(text: &str) -> Option<Self> {
        text.split(' ')
            .filter(|part| !part.is_empty())
            .map(ScopeToken::parse)
            .collect::<Option<BTreeSet<_>>>()
            .map(Self)
    }

    /// Builds a set from already separated values, silently dropping malformed ones.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        Self(values.into_iter().filter_map(ScopeToken::parse).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &ScopeToken) -> bool {
        self.0.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ScopeToken> {
        self.0.iter()
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// The space-delimited wire form.
    pub fn to_wire(&self) -> String {
        self.0.iter().map(ScopeToken::as_str).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens_reject_quote_backslash_and_space() {
        assert!(ScopeToken::parse("read:orders").is_some());
        assert!(ScopeToken::parse("a\"b").is_none());
        assert!(ScopeToken::parse("a\\b").is_none());
        assert!(ScopeToken::parse("").is_none());
    }

    #[test]
    fn scope_sets_ignore_repeated_spaces_and_sort() {
        let set = ScopeSet::parse("write  read").unwrap_or_default();
        assert_eq!(set.to_wire(), "read write");
    }
}
