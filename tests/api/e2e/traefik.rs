//! Traefik with a ForwardAuth middleware (examples/traefik/).

use super::harness::Proxy;

gateway_behaviours!(Proxy::Traefik);
