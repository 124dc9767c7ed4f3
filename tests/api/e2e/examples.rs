//! The example files themselves: the service accepts its configuration, and every proxy
//! configuration names no placeholder the harness does not fill in.

use super::harness::{example_path, example_settings, render};

#[test]
fn the_example_service_configuration_is_valid_and_has_the_tested_routes() {
    let settings = example_settings();

    let routes: Vec<_> = settings.forward_auth.routes.iter().map(|r| (r.name.as_str(), r.audience.as_str())).collect();
    assert_eq!(routes, [("api", "orders"), ("billing", "billing")]);
    assert!(settings.forward_auth.proxy_cache_ttl.is_zero(), "the example caches nothing unless told to");
}

#[test]
fn every_proxy_example_renders_with_no_placeholder_left() {
    let values =
        ["AUTH_PORT", "GRPC_PORT", "BACKEND_PORT", "LISTEN_PORT", "CACHED_LISTEN_PORT", "CACHE_DIR", "DYNAMIC_CONFIG"]
            .map(|name| (name, "1".to_owned()));
    for file in [
        "nginx/nginx.conf",
        "envoy/http.yaml",
        "envoy/grpc.yaml",
        "traefik/traefik.yml",
        "traefik/dynamic.yml",
        "caddy/Caddyfile",
    ] {
        let text = std::fs::read_to_string(example_path(file)).unwrap();
        render(&text, &values);
    }
}
