//! Where a minted token may be used: RFC 8693 §2.1 `audience` (a logical name) and `resource`
//! (RFC 8707 §2: an absolute URI without a fragment). Both end up in the minted `aud`.

use std::fmt;

/// A logical name of a target service, or a resource URI once it has been checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Audience(String);

impl Audience {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 8707 resource indicator, kept as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource(String);

impl Resource {
    /// An absolute URI (RFC 3986 §4.3) without a fragment, or why not.
    pub fn parse(value: &str) -> Result<Self, &'static str> {
        url::Url::parse(value).map_err(|_| "resource must be an absolute URI")?;
        if value.contains('#') {
            return Err("resource must not contain a fragment");
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Resource> for Audience {
    fn from(resource: Resource) -> Self {
        Self(resource.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_absolute_uris_without_fragment() {
        assert!(Resource::parse("https://orders.internal/api?v=1").is_ok());
        assert!(Resource::parse("orders").is_err());
        assert!(Resource::parse("https://orders.internal/api#frag").is_err());
    }
}
