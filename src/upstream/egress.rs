//! How upstream requests leave the network ([`Egress`]), and the proxies that takes. Loopback
//! destinations are always reached directly, as Go's HTTP client does too: a proxy's own
//! localhost is not ours, and an `http://` upstream, allowed on loopback only, would cross the
//! network in clear text.

use reqwest::{NoProxy, Proxy};
use url::Url;

/// How upstream requests leave the network (`upstream_http.proxy`): egress through a forward
/// proxy is the rule in many production networks, and an identity provider is usually outside
/// them.
#[derive(Clone, PartialEq, Eq)]
pub enum Egress {
    /// Through the proxies that `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` name,
    /// if the environment names any, as most tools do.
    Environment,
    /// Straight to every upstream, whatever the environment says.
    Direct,
    /// Through the HTTP(S) proxy at this URL (with its credentials, if it has any), except for
    /// the hosts of `no_proxy`.
    Proxy(Url),
}

impl Egress {
    /// `"environment"`, `"direct"` or a proxy's URL; the error says what is wrong with it,
    /// without repeating it (a URL may hold credentials).
    pub fn parse(setting: &str) -> Result<Self, String> {
        match setting.trim() {
            "environment" => Ok(Self::Environment),
            "direct" => Ok(Self::Direct),
            text => {
                let url = Url::parse(text)
                    .map_err(|e| format!("must be \"environment\", \"direct\" or a proxy's URL ({e})"))?;
                if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                    return Err("a proxy's URL must be http:// or https:// and name a host".into());
                }
                if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                    return Err("a proxy's URL names a host and port, no path".into());
                }
                Ok(Self::Proxy(url))
            }
        }
    }
}

/// As for logs: a `{:?}` of the settings must not print a proxy's password either.
impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Egress {
    /// For logs: a proxy's credentials are left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => f.write_str("the environment's proxy settings"),
            Self::Direct => f.write_str("direct"),
            Self::Proxy(url) => {
                let (host, port) = (url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
                write!(f, "{}://{host}:{port}", url.scheme())
            }
        }
    }
}

/// Destinations no proxy is used for, whatever the settings or the environment say.
const ALWAYS_DIRECT: &str = "localhost,127.0.0.0/8,::1";

/// The proxies for `egress`, with `no_proxy` the exceptions to a configured one, and `env` the
/// process's environment. Empty: every request goes directly.
pub fn proxies(
    egress: &Egress,
    no_proxy: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Proxy>, reqwest::Error> {
    match egress {
        Egress::Direct => Ok(Vec::new()),
        Egress::Proxy(url) => Ok(vec![Proxy::all(url.as_str())?.no_proxy(exceptions(&no_proxy.join(",")))]),
        Egress::Environment => from_environment(env),
    }
}

/// What curl reads: `HTTPS_PROXY` for https, `HTTP_PROXY` for http, `ALL_PROXY` for either,
/// each also in lower case, and `NO_PROXY`. Upper-case `HTTP_PROXY` is ignored when
/// `REQUEST_METHOD` is set, where a CGI request's `Proxy:` header could have set it (httpoxy).
fn from_environment(env: impl Fn(&str) -> Option<String>) -> Result<Vec<Proxy>, reqwest::Error> {
    let first = |names: &[&str]| names.iter().find_map(|name| env(name).filter(|value| !value.trim().is_empty()));
    let except = exceptions(&first(&["NO_PROXY", "no_proxy"]).unwrap_or_default());
    let http_names: &[&str] =
        if env("REQUEST_METHOD").is_some() { &["http_proxy"] } else { &["HTTP_PROXY", "http_proxy"] };
    let mut proxies = Vec::new();
    if let Some(url) = first(&["HTTPS_PROXY", "https_proxy"]) {
        proxies.push(Proxy::https(url)?.no_proxy(except.clone()));
    }
    if let Some(url) = first(http_names) {
        proxies.push(Proxy::http(url)?.no_proxy(except.clone()));
    }
    if let Some(url) = first(&["ALL_PROXY", "all_proxy"]) {
        proxies.push(Proxy::all(url)?.no_proxy(except));
    }
    Ok(proxies)
}

fn exceptions(listed: &str) -> Option<NoProxy> {
    let listed = listed.split(',').map(str::trim).filter(|entry| !entry.is_empty());
    NoProxy::from_string(&listed.chain([ALWAYS_DIRECT]).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    fn from(pairs: &'static [(&'static str, &'static str)]) -> usize {
        proxies(&Egress::Environment, &[], environment(pairs)).map(|proxies| proxies.len()).unwrap_or(usize::MAX)
    }

    #[test]
    fn an_environment_naming_no_proxy_sends_every_request_directly() {
        assert_eq!(from(&[("NO_PROXY", "corp.example")]), 0);
        assert_eq!(from(&[("HTTPS_PROXY", " ")]), 0, "an empty value names no proxy");
    }

    #[test]
    fn each_scheme_takes_its_own_variable_in_either_case_and_all_proxy_both() {
        assert_eq!(from(&[("https_proxy", "http://egress:3128"), ("HTTP_PROXY", "http://egress:3128")]), 2);
        assert_eq!(from(&[("ALL_PROXY", "http://egress:3128")]), 1);
    }

    /// httpoxy: under CGI, a request's `Proxy:` header arrives as `HTTP_PROXY`.
    #[test]
    fn upper_case_http_proxy_is_ignored_where_a_cgi_request_could_have_set_it() {
        assert_eq!(from(&[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://attacker:8080")]), 0);
        assert_eq!(from(&[("REQUEST_METHOD", "GET"), ("http_proxy", "http://egress:3128")]), 1);
    }

    #[test]
    fn direct_means_no_proxy_whatever_the_environment_says() {
        let all = environment(&[("ALL_PROXY", "http://egress:3128")]);
        assert_eq!(proxies(&Egress::Direct, &[], all).map(|proxies| proxies.len()).ok(), Some(0));
    }
}
