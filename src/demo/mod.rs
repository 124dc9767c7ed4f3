//! `token-exchange demo`: the service on its embedded defaults, wired to a built-in DEMO
//! identity provider, with the curl commands that walk through it printed ready to paste.
//!
//! Everything here is for trying the service on one machine: both servers listen on loopback
//! only (anything else is refused before anything starts), the demo client's secret is
//! printed, and the identity provider issues tokens to whoever asks. `token-exchange serve` is
//! the command for real use.

mod commands;
mod idp;
mod verify;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{ClientSettings, RouteSettings, Settings, UpstreamSettings};
use crate::startup::Application;

pub use verify::verify_token;

/// The client the printed commands authenticate as, and its secret (printed: demo only).
const CLIENT_ID: &str = "demo-gateway";
const CLIENT_SECRET: &str = "demo-gateway-secret";
/// What the demo client may ask for, and the forward-auth route that uses it.
const AUDIENCE: &str = "orders";
const SCOPES: [&str; 2] = ["read", "write"];
const ROUTE: &str = "orders";
const ROUTE_PATH: &str = "/orders";
const ROUTE_SCOPE: &str = "read";
/// Where the demo keeps its database (our signing keys), below the working directory.
const DATA_DIR: &str = "data/demo";

/// Where the two servers listen.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// token-exchange itself; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The DEMO identity provider; port 0 picks a free port.
    pub idp_listen: SocketAddr,
}

/// An address the demo will not listen on.
#[derive(Debug, thiserror::Error)]
#[error(
    "{flag} {address}: the demo listens on loopback only (127.0.0.1 or ::1), because it prints its client \
     secret and its identity provider issues tokens to anyone; for real use run `token-exchange serve`"
)]
pub struct NotLoopback {
    pub flag: &'static str,
    pub address: SocketAddr,
}

impl DemoOptions {
    /// Both addresses must be loopback ones.
    pub fn check(&self) -> Result<(), NotLoopback> {
        for (flag, address) in [("--listen", self.listen), ("--idp-listen", self.idp_listen)] {
            if !address.ip().is_loopback() {
                return Err(NotLoopback { flag, address });
            }
        }
        Ok(())
    }
}

/// Starts the DEMO identity provider and the service, prints the walkthrough and serves until
/// SIGINT or SIGTERM. `program` is the binary the printed commands call (`verify-token`).
pub async fn run(options: DemoOptions, program: &Path) -> anyhow::Result<()> {
    options.check()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let idp = idp::DemoIdp::start(options.idp_listen, clock)?;
    let listen = concrete_address(options.listen)?;
    let settings = settings(listen, &idp)?;
    let minted_ttl = settings.tokens.ttl;
    let application = Application::build(settings).await?;
    let walkthrough = commands::Walkthrough {
        service: format!("http://{}", SocketAddr::new(listen.ip(), application.port())),
        idp: idp.base_url().to_owned(),
        program: commands::shell_word(&program.to_string_lossy()),
        database: PathBuf::from(DATA_DIR).join("token-exchange.db"),
        minted_ttl,
    };
    // The demo's settings come from no file, so a reload (SIGHUP) would replace them with the
    // bare defaults: a hangup (its terminal closed) stops the demo instead.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    print!("{}", walkthrough.render());
    let served = tokio::select! {
        served = application.run_until_stopped() => served.context("token-exchange stopped"),
        _ = hangup.recv() => {
            tracing::info!(demo = true, "hangup: the demo has no configuration to reload, so it stops");
            Ok(())
        }
    };
    idp.stop().await;
    served
}

/// The issuer names our port, which must be known before the service binds it: port 0 is
/// replaced by a free port found now (another process could take it in between; then the
/// start fails and says so).
fn concrete_address(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    Ok(probe.local_addr()?)
}

/// The embedded defaults, plus what the demo needs: a loopback issuer, its own database, the
/// DEMO identity provider as the one upstream, one client and one forward-auth route.
fn settings(listen: SocketAddr, idp: &idp::DemoIdp) -> anyhow::Result<Settings> {
    let mut settings = Settings::default();
    settings.server.listen = listen;
    settings.server.issuer = format!("http://{listen}");
    settings.storage.database_url = format!("sqlite://{DATA_DIR}/token-exchange.db");
    let upstream: UpstreamSettings = serde_json::from_value(serde_json::json!({
        "name": "demo",
        "issuer": idp.base_url(),
        "jwks_uri": idp.url(idp::JWKS_PATH),
        "audiences": [idp::AUDIENCE],
        "algorithms": ["ES256"],
        "introspection_endpoint": idp.url(idp::INTROSPECTION_PATH),
        "userinfo_endpoint": idp.url(idp::USERINFO_PATH),
        "client_id": idp::INTROSPECTION_CLIENT_ID,
        "client_secret": idp.introspection_secret(),
        "default_for_opaque": true,
    }))
    .context("describing the demo upstream")?;
    settings.upstreams.push(upstream);
    let secret_hash = crate::clients::hash_secret(CLIENT_SECRET)
        .map_err(|error| anyhow::anyhow!("cannot hash the demo client's secret: {error}"))?;
    settings.clients.push(ClientSettings {
        client_id: CLIENT_ID.into(),
        secret_hash: Some(secret_hash),
        jwks: None,
        jwks_uri: None,
        assertion_max_lifetime: None,
        audiences: vec![AUDIENCE.into()],
        scopes: SCOPES.iter().map(|&scope| scope.into()).collect(),
        admin: false,
        upstream: None,
    });
    settings.forward_auth.routes.push(RouteSettings {
        name: ROUTE.into(),
        hosts: Vec::new(),
        path_prefix: ROUTE_PATH.into(),
        methods: Vec::new(),
        client: CLIENT_ID.into(),
        audience: AUDIENCE.into(),
        scope: Some(ROUTE_SCOPE.into()),
    });
    settings.validate().context("the demo's own settings")?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let loopback =
            DemoOptions { listen: "127.0.0.1:0".parse().unwrap(), idp_listen: "[::1]:8081".parse().unwrap() };
        assert!(loopback.check().is_ok());

        let open = DemoOptions { listen: "0.0.0.0:8080".parse().unwrap(), ..loopback };
        assert_eq!(open.check().unwrap_err().flag, "--listen");
        let idp_open = DemoOptions { idp_listen: "192.0.2.1:8081".parse().unwrap(), ..loopback };
        assert_eq!(idp_open.check().unwrap_err().flag, "--idp-listen");
    }
}
