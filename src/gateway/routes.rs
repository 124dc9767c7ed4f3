//! Which route a gateway's request falls under: by name when the gateway says, else by host,
//! method and the longest matching path prefix.

use super::RouteSettings;
use crate::vocabulary::{Audience, ScopeSet};

/// The request the gateway is deciding about, as it describes it.
#[derive(Debug, Clone, Default)]
pub struct OriginalRequest {
    pub method: String,
    pub host: String,
    /// Path and query, as sent by the client.
    pub uri: String,
}

/// A configured route, checked and parsed once.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    hosts: Vec<String>,
    prefix: Vec<String>,
    methods: Vec<String>,
    pub client_id: String,
    pub audience: Audience,
    pub scope: Option<ScopeSet>,
}

/// Why no route applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    #[error("no route is named {0:?}")]
    UnknownName(String),
    #[error("the path is not in normal form (`..`, `//` or an encoded `/`)")]
    AmbiguousPath,
    #[error("no route matches the request")]
    NoMatch,
}

impl Route {
    /// `None` when the prefix or scope cannot be used (reported by config validation).
    pub fn from_settings(settings: &RouteSettings) -> Option<Self> {
        Some(Self {
            name: settings.name.clone(),
            hosts: settings.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            prefix: normalised_segments(&settings.path_prefix)?,
            methods: settings.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            client_id: settings.client.clone(),
            audience: Audience::new(settings.audience.clone()),
            scope: match &settings.scope {
                Some(scope) => Some(ScopeSet::parse(scope)?),
                None => None,
            },
        })
    }

    /// `host` is lowercase, without port.
    fn matches_host(&self, host: &str) -> bool {
        self.hosts.is_empty()
            || self.hosts.iter().any(|pattern| match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .and_then(|sub| sub.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty()),
                None => pattern == host,
            })
    }

    fn matches_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// A `Host` value without its port, lowercase.
fn host_only(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name.to_ascii_lowercase(),
        _ => host.to_ascii_lowercase(),
    }
}

/// Every route, in the order the longest prefix wins.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        Self { routes }
    }

    /// The route `name` when the gateway names one, else the best match for the request.
    pub fn select(&self, name: Option<&str>, request: &OriginalRequest) -> Result<&Route, NoRoute> {
        if let Some(name) = name {
            return self.routes.iter().find(|r| r.name == name).ok_or_else(|| NoRoute::UnknownName(name.to_owned()));
        }
        let path = request.uri.split(['?', '#']).next().unwrap_or("");
        let segments = normalised_segments(path).ok_or(NoRoute::AmbiguousPath)?;
        let host = host_only(&request.host);
        self.routes
            .iter()
            .find(|route| {
                route.matches_method(&request.method)
                    && route.matches_host(&host)
                    && segments.starts_with(&route.prefix)
            })
            .ok_or(NoRoute::NoMatch)
    }
}

/// The segments of an absolute path, percent-decoded; `None` for any path that two parties
/// could read differently: relative, with `.` or `..` segments, empty segments (`//`), or a
/// `/`, `\` or NUL hidden by encoding.
fn normalised_segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let trimmed = rest.strip_suffix('/').unwrap_or(rest);
    trimmed
        .split('/')
        .map(|raw| {
            let segment = percent_decode(raw)?;
            let ambiguous =
                segment.is_empty() || segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']);
            (!ambiguous).then_some(segment)
        })
        .collect()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, hosts: &[&str], prefix: &str, methods: &[&str]) -> Route {
        let settings = RouteSettings {
            name: name.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            path_prefix: prefix.into(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            client: "gateway".into(),
            audience: name.into(),
            scope: None,
        };
        Route::from_settings(&settings).unwrap_or_else(|| unreachable!("valid test route"))
    }

    fn request(method: &str, host: &str, uri: &str) -> OriginalRequest {
        OriginalRequest { method: method.into(), host: host.into(), uri: uri.into() }
    }

    fn selected(table: &RouteTable, request: &OriginalRequest) -> Result<String, NoRoute> {
        table.select(None, request).map(|route| route.name.clone())
    }

    #[test]
    fn the_longest_matching_prefix_wins_segment_by_segment() {
        let table = RouteTable::new(vec![route("all", &[], "/", &[]), route("orders", &[], "/api/orders", &[])]);
        assert_eq!(selected(&table, &request("GET", "h", "/api/orders/7?x=1")), Ok("orders".into()));
        assert_eq!(selected(&table, &request("GET", "h", "/api/orders")), Ok("orders".into()));
        assert_eq!(selected(&table, &request("GET", "h", "/api/ordersx")), Ok("all".into()));
    }

    #[test]
    fn hosts_match_exactly_or_by_wildcard_subdomain_and_ports_are_ignored() {
        let table = RouteTable::new(vec![route("api", &["api.example.com", "*.apps.example.com"], "/", &[])]);
        assert!(selected(&table, &request("GET", "API.example.com:8443", "/")).is_ok());
        assert!(selected(&table, &request("GET", "a.apps.example.com", "/")).is_ok());
        assert_eq!(selected(&table, &request("GET", "apps.example.com", "/")), Err(NoRoute::NoMatch));
        assert_eq!(selected(&table, &request("GET", "evilapps.example.com", "/")), Err(NoRoute::NoMatch));
    }

    #[test]
    fn methods_restrict_a_route() {
        let table = RouteTable::new(vec![route("read", &[], "/", &["GET", "HEAD"])]);
        assert!(selected(&table, &request("head", "h", "/")).is_ok());
        assert_eq!(selected(&table, &request("POST", "h", "/")), Err(NoRoute::NoMatch));
    }

    #[test]
    fn paths_two_parties_could_read_differently_are_refused() {
        let table = RouteTable::new(vec![route("all", &[], "/", &[])]);
        for uri in ["/a/../admin", "/a//b", "/a/%2e%2e/b", "/a%2Fb", "/./a", "relative", "/a/%zz"] {
            assert_eq!(selected(&table, &request("GET", "h", uri)), Err(NoRoute::AmbiguousPath), "{uri}");
        }
    }

    #[test]
    fn a_named_route_must_exist() {
        let table = RouteTable::new(vec![route("orders", &[], "/orders", &[])]);
        let any = request("GET", "h", "/elsewhere");
        assert_eq!(table.select(Some("orders"), &any).map(|r| r.name.clone()), Ok("orders".into()));
        assert_eq!(table.select(Some("nope"), &any).map(|r| r.name.clone()), Err(NoRoute::UnknownName("nope".into())));
    }
}
