use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

/// `[forward_auth]`: the decision endpoint gateways call with configuration alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardAuthSettings {
    /// Peers allowed to ask for decisions; anyone else is refused before any work.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a proxy may cache a decision (never beyond the minted token's life); zero
    /// forbids caching.
    #[serde(with = "crate::clock::written")]
    pub proxy_cache_ttl: Duration,
    /// Envoy ext_authz v3 over gRPC (h2c) on this address; off when absent.
    pub grpc_listen: Option<SocketAddr>,
    pub routes: Vec<RouteSettings>,
}

impl Default for ForwardAuthSettings {
    fn default() -> Self {
        let loopback_v4 = Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8);
        let loopback_v6 = Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128);
        Self {
            trusted_proxies: vec![IpNet::V4(loopback_v4), IpNet::V6(loopback_v6)],
            proxy_cache_ttl: Duration::ZERO,
            grpc_listen: None,
            routes: Vec::new(),
        }
    }
}

/// One protected area behind a gateway, and what a request to it is exchanged for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    pub name: String,
    /// Exact host names, or `*.example.com` for any subdomain; empty matches every host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Matched segment by segment against the normalised path.
    #[serde(default = "root")]
    pub path_prefix: String,
    /// Allowed methods; empty allows all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The registered client whose audiences, scopes and upstream binding apply.
    pub client: String,
    /// `aud` of the internal token.
    pub audience: String,
    /// Space-delimited scopes the internal token must carry; all must be granted.
    #[serde(default)]
    pub scope: Option<String>,
}

fn root() -> String {
    "/".into()
}
