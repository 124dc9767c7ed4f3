use super::OAuthError;

/// Parameters we read that must appear at most once (RFC 6749 §3.2). RFC 8693 §2.1 lets
/// `audience` and `resource` repeat; parameters we do not know are ignored, repeated or not.
const SINGLE: &[&str] = &[
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
    "scope",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "token",
    "token_type_hint",
    "sub",
    "iss",
];

/// Far more than any real request carries; bounds the work spent on a hostile body.
const MAX_PARAMETERS: usize = 100;

/// A decoded `application/x-www-form-urlencoded` body. Parameters sent without a value count as
/// omitted (RFC 6749 §3.2); unknown parameters are kept but never looked at.
#[derive(Default)]
pub struct FormParams(Vec<(String, String)>);

/// Parameter names only: the values include tokens and client secrets.
impl std::fmt::Debug for FormParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

impl FormParams {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_html_form::from_bytes(body)
            .map_err(|_| OAuthError::invalid_request("the body is not valid form-urlencoded UTF-8"))?;
        if pairs.len() > MAX_PARAMETERS {
            return Err(OAuthError::invalid_request("the request has too many parameters"));
        }
        let params = Self(pairs.into_iter().filter(|(_, value)| !value.is_empty()).collect());
        params.reject_repeats()?;
        Ok(params)
    }

    fn reject_repeats(&self) -> Result<(), OAuthError> {
        let mut seen = std::collections::HashSet::with_capacity(self.0.len());
        for (name, _) in &self.0 {
            if SINGLE.contains(&name.as_str()) && !seen.insert(name.as_str()) {
                return Err(OAuthError::invalid_request("a parameter that may appear once is repeated"));
            }
        }
        Ok(())
    }

    /// The value of a parameter that may appear once.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// Every value of a repeatable parameter, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_omitted() {
        let form = FormParams::parse(b"scope=&grant_type=x").unwrap_or_default();
        assert_eq!(form.get("scope"), None);
        assert_eq!(form.get("grant_type"), Some("x"));
    }

    #[test]
    fn repeated_single_parameters_are_rejected_but_audience_may_repeat() {
        assert!(FormParams::parse(b"grant_type=a&grant_type=b").is_err());
        assert!(FormParams::parse(b"unknown=a&unknown=b").is_ok());
        let form = FormParams::parse(b"audience=a&audience=b").unwrap_or_default();
        assert_eq!(form.all("audience").collect::<Vec<_>>(), ["a", "b"]);
    }
}
