//! Decoding of `application/x-www-form-urlencoded` bodies into the wire types of `request.rs`.
//! Parameters sent without a value count as omitted (RFC 6749 §3.2); unknown parameters are
//! ignored, repeated or not; a parameter we read may appear once, except those RFC 8693 §2.1
//! lets repeat (`audience`, `resource`), which the wire types declare as lists.

use serde::de::DeserializeOwned;

use super::OAuthError;

/// Far more than any real request carries; bounds the work spent on a hostile body.
const MAX_PARAMETERS: usize = 100;

/// Decodes a form body into its wire type, or answers `invalid_request`.
pub fn decode_form<T: DeserializeOwned>(body: &[u8]) -> Result<T, OAuthError> {
    std::str::from_utf8(body).map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    if body.split(|&byte| byte == b'&').count() > MAX_PARAMETERS {
        return Err(OAuthError::invalid_request("the request has too many parameters"));
    }
    // With every field a string or a list of strings, the only way to fail is a repeat.
    serde_html_form::from_bytes(body)
        .map_err(|_| OAuthError::invalid_request("a parameter that may appear once is repeated"))
}

/// A parameter's value, with an empty value counting as omitted (RFC 6749 §3.2).
pub fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// A required parameter, or `invalid_request` naming it.
pub fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, OAuthError> {
    present(value).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Probe {
        scope: Option<String>,
        #[serde(default)]
        audience: Vec<String>,
    }

    #[test]
    fn empty_values_count_as_omitted() {
        let probe: Probe = decode_form(b"scope=&grant_type=x").unwrap_or(Probe { scope: None, audience: vec![] });
        assert_eq!(present(&probe.scope), None);
    }

    #[test]
    fn repeated_single_parameters_are_rejected_but_audience_and_unknowns_may_repeat() {
        assert!(decode_form::<Probe>(b"scope=a&scope=b").is_err());
        assert!(decode_form::<Probe>(b"unknown=a&unknown=b").is_ok());
        let probe = decode_form::<Probe>(b"audience=a&audience=b").map(|p| p.audience).unwrap_or_default();
        assert_eq!(probe, ["a", "b"]);
    }

    #[test]
    fn bodies_with_too_many_parameters_are_refused() {
        let body = "x=1&".repeat(MAX_PARAMETERS + 1);
        assert!(decode_form::<Probe>(body.as_bytes()).is_err());
    }
}
