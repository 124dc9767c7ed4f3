use serde::{Deserialize, Serialize};

/// Algorithms we sign with. All asymmetric (RFC 9068 §2.1 recommends it; RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::ES256, Self::EdDSA, Self::RS256].into_iter().find(|alg| alg.as_str() == name)
    }
}
