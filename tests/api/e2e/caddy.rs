//! Caddy with `forward_auth` (examples/caddy/Caddyfile).

use super::harness::Proxy;

gateway_behaviours!(Proxy::Caddy);
