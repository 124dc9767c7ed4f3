//! Builds the application from settings: storage, keys, upstreams, clients, HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::cache::{IdentityCache, MemoryCache, RedisCache};
use crate::clients::ClientRegistry;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{ForwardAuthSettings, Settings};
use crate::exchange::ExchangeService;
use crate::gateway::ForwardAuth;
use crate::http;
use crate::identity::{IdentityService, Protection, Routes};
use crate::keys::KeyRing;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::oauth::ServerMetadata;
use crate::rate_limit::RateLimits;
use crate::state::{AppState, BodyLimits};
use crate::storage::Database;
use crate::upstream::{JwksCache, JwtUpstream, MetadataCache, OpaqueUpstream, UpstreamHttp};

/// How long a client may take to send its request headers (actix answers 408 after it).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A built, listening, not yet running server.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    grpc_port: Option<u16>,
    reloader: Arc<Reloader>,
    server: Server,
    database: Database,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Like [`Self::build`], with the time source injected (tests pin it).
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let database = Database::open(&settings.storage).await?;
        let keys = Arc::new(
            KeyRing::open(
                sealed_key_store(&settings, &database)?,
                settings.tokens.algorithm,
                settings.rotation_policy(),
                clock.now(),
            )
            .await
            .context("loading signing keys")?,
        );
        tokio::spawn(maintain_keys(keys.clone(), clock.clone(), settings.keys.refresh_interval));
        let http_client = Arc::new(
            UpstreamHttp::new(&settings.upstream_http, metrics.clone(), clock.clone())
                .context("building the HTTP client")?,
        );
        let routes = upstream_routes(&settings, &http_client);
        let identities = Arc::new(identity_service(&settings, routes, clock.clone(), metrics.clone())?);
        let clients = Arc::new(Live::new(client_registry(&settings, &http_client)?));
        let exchange =
            Arc::new(ExchangeService::new(identities.clone(), keys.clone(), settings.minting(), clock.clone()));
        let forward_auth =
            Arc::new(ForwardAuth::new(&settings.forward_auth, exchange.clone(), clients.clone(), metrics.clone()));
        let (stopping, stop_requested) = tokio::sync::watch::channel(false);
        let grpc_port = match settings.forward_auth.grpc_listen {
            Some(address) => Some(serve_ext_authz(address, forward_auth.clone(), &settings, stop_requested)?),
            None => None,
        };
        let metadata = Live::new(ServerMetadata::new(&settings.server.issuer, supported_scopes(&settings)));
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let port = listener.local_addr()?.port();
        let metrics_listener = match settings.server.metrics_listen {
            Some(address) => {
                Some(TcpListener::bind(address).with_context(|| format!("cannot listen on {address} for metrics"))?)
            }
            None => None,
        };
        let metrics_port = metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?.map(|a| a.port());
        let rate_limits = Arc::new(RateLimits::new(&settings.rate_limits, metrics.clone()));
        tokio::spawn(rate_limits.clone().maintain(clock.clone()));
        let state = web::Data::new(AppState {
            clients,
            exchange,
            forward_auth,
            issuer: settings.server.issuer.as_str().into(),
            identities,
            metrics,
            rate_limits,
            keys,
            database: database.clone(),
            metadata,
            bodies: BodyLimits {
                max_bytes: settings.server.max_body_bytes,
                read_timeout: settings.server.body_read_timeout,
            },
            metrics_port,
            clock,
        });

        let reloader = Arc::new(Reloader {
            running: tokio::sync::Mutex::new(settings.clone()),
            state: state.clone(),
            http: http_client,
        });
        reload_on_hangup(reloader.clone())?;
        if let Some(file) = settings.source.clone() {
            tokio::spawn(reload_on_change(reloader.clone(), file, state.clock.clone()));
        }
        let mut server = HttpServer::new(move || {
            App::new()
                .into_utoipa_app()
                .openapi(http::ApiDoc::openapi())
                .app_data(state.clone())
                .configure(http::routes)
                .openapi_service(|api| SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", http::complete(api)))
                .map(|app| {
                    app.configure(http::undocumented_routes)
                        .service(web::redirect("/swagger-ui", "/swagger-ui/"))
                        .default_service(web::to(http::not_found))
                        .wrap(actix_web::middleware::from_fn(http::head_as_get))
                        .wrap(actix_web::middleware::from_fn(http::listener_gate))
                        .wrap(http::security_headers())
                        .wrap(actix_web::middleware::from_fn(crate::telemetry::access_log))
                        .wrap(TracingLogger::<crate::telemetry::RedactedRootSpan>::new())
                })
                .into_app()
        })
        .shutdown_timeout(10)
        .max_connections(settings.server.max_connections_per_worker)
        .client_request_timeout(HEADER_READ_TIMEOUT)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .disable_signals()
        .listen(listener)?;
        if let Some(metrics_listener) = metrics_listener {
            server = server.listen(metrics_listener)?;
        }
        if let Some(workers) = settings.server.workers {
            server = server.workers(workers);
        }
        let server = server.run();
        stop_on_signal(server.handle(), stopping)?;
        tracing::info!(port, metrics_port, grpc_port, issuer = %settings.server.issuer, "token-exchange listening");
        Ok(Self { port, metrics_port, grpc_port, server, database, reloader })
    }

    /// Applies a changed configuration while serving; SIGHUP calls it too.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// The port of the Envoy ext_authz gRPC listener (`forward_auth.grpc_listen`), if any.
    pub fn grpc_port(&self) -> Option<u16> {
        self.grpc_port
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate metrics listener (`server.metrics_listen`), if any.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until SIGTERM or SIGINT, then drains in-flight requests (graceful shutdown).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.database.close().await;
        result
    }
}

/// Applies a changed configuration to a running application: clients, upstreams (and the
/// claims they keep), forward-auth routes and trusted proxies. Requests under way finish on
/// what they started with. What only a restart can change is named in the log and left as is.
pub struct Reloader {
    running: tokio::sync::Mutex<Settings>,
    state: web::Data<AppState>,
    http: Arc<UpstreamHttp>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Upstreams whose settings changed (or that left): their cached verdicts were dropped.
    pub changed_upstreams: Vec<String>,
    /// Settings that differ but keep their running value until a restart.
    pub needs_restart: Vec<&'static str>,
}

impl Reloader {
    /// Reads the configuration file again (and the environment) and applies it. An invalid
    /// configuration changes nothing.
    pub async fn reload(&self) -> anyhow::Result<Reloaded> {
        let source = self.running.lock().await.source.clone();
        let settings = Settings::load(source.as_deref())?;
        self.apply(settings).await
    }

    pub async fn apply(&self, settings: Settings) -> anyhow::Result<Reloaded> {
        settings.validate()?;
        let mut running = self.running.lock().await;
        let mut next = running.clone();
        next.clients = settings.clients.clone();
        next.upstreams = settings.upstreams.clone();
        next.tokens.claims = settings.tokens.claims.clone();
        next.forward_auth =
            ForwardAuthSettings { grpc_listen: running.forward_auth.grpc_listen, ..settings.forward_auth.clone() };
        next.validate()?;
        let reloaded = Reloaded {
            changed_upstreams: changed_upstreams(&running, &next),
            needs_restart: running.fixed_differences(&settings),
        };
        self.state.clients.replace(client_registry(&next, &self.http)?);
        self.state.identities.protection().configure(&next.upstreams);
        self.state.identities.reconfigure(upstream_routes(&next, &self.http), &reloaded.changed_upstreams).await;
        self.state.forward_auth.reconfigure(&next.forward_auth);
        self.state.metadata.replace(ServerMetadata::new(&next.server.issuer, supported_scopes(&next)));
        for key in &reloaded.needs_restart {
            tracing::warn!(key, "changed in the configuration; only a restart applies it");
        }
        tracing::info!(
            clients = next.clients.len(),
            upstreams = next.upstreams.len(),
            routes = next.forward_auth.routes.len(),
            changed_upstreams = ?reloaded.changed_upstreams,
            "configuration reloaded"
        );
        *running = next;
        Ok(reloaded)
    }
}

/// Upstreams whose verdicts no longer hold: settings changed, gone, or the kept claims changed.
/// `protection` bounds how an upstream is asked, not what it answered: it keeps the verdicts.
fn changed_upstreams(running: &Settings, next: &Settings) -> Vec<String> {
    let claims_changed = running.tokens.claims != next.tokens.claims;
    let verdict_settings = |u: &crate::upstream::UpstreamSettings| {
        format!("{:?}", crate::upstream::UpstreamSettings { protection: Default::default(), ..u.clone() })
    };
    running
        .upstreams
        .iter()
        .filter(|old| {
            let new = next.upstreams.iter().find(|u| u.name == old.name);
            claims_changed || new.is_none_or(|new| verdict_settings(new) != verdict_settings(old))
        })
        .map(|old| old.name.clone())
        .collect()
}

fn client_registry(settings: &Settings, http: &Arc<UpstreamHttp>) -> anyhow::Result<ClientRegistry> {
    ClientRegistry::new(&settings.clients, settings.server.max_failed_client_auth_per_minute, http.clone())
        .map_err(|_| anyhow::anyhow!("cannot generate a random key"))
}

/// How often the configuration file is looked at for changes.
const CONFIG_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// A saved configuration file reloads itself: its modification time and length are checked
/// every [`CONFIG_WATCH_INTERVAL`] (no inotify, so it works on every file system and mount).
async fn reload_on_change(reloader: Arc<Reloader>, file: std::path::PathBuf, clock: SharedClock) {
    let stamp = |file: &std::path::Path| std::fs::metadata(file).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = stamp(&file);
    loop {
        clock.sleep(CONFIG_WATCH_INTERVAL).await;
        let now = stamp(&file);
        if now == seen {
            continue;
        }
        seen = now;
        tracing::info!(file = %file.display(), "the configuration file changed");
        if let Err(error) = reloader.reload().await {
            tracing::error!(error = format!("{error:#}"), "configuration refused; the running one stays in force");
        }
    }
}

/// SIGHUP reloads the configuration; a refused one is logged with its reason and the running
/// configuration stays in force.
fn reload_on_hangup(reloader: Arc<Reloader>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(error) = reloader.reload().await {
                tracing::error!(error = format!("{error:#}"), "configuration refused; the running one stays in force");
            }
        }
    });
    Ok(())
}

/// The database's key store behind the key-encryption key: a KEK that is missing, malformed or
/// wrong stops the start, before any key could be generated over the stored ones.
pub fn sealed_key_store(settings: &Settings, database: &Database) -> anyhow::Result<Arc<dyn crate::keys::KeyStore>> {
    let (custody, created) = settings.key_custody()?;
    if let Some(path) = created {
        tracing::warn!(
            path = %path.display(),
            "created a key-encryption key for the signing keys; back it up with the database: without it they cannot be opened"
        );
    }
    Ok(Arc::new(crate::keys::SealedKeyStore::new(database.key_store(), Arc::new(custody))))
}

/// Every upstream, as the routes tokens can take: JWT upstreams by issuer, opaque ones by name.
fn upstream_routes(settings: &Settings, http: &Arc<UpstreamHttp>) -> Routes {
    let claims = &settings.tokens.claims;
    let (mut jwt, mut opaque) = (Vec::new(), Vec::new());
    for upstream in &settings.upstreams {
        // One provider, one copy of its metadata and keys, however many ways its tokens are checked.
        let metadata = MetadataCache::for_upstream(upstream, http.clone());
        let keys = JwksCache::for_upstream(upstream, metadata.clone(), http.clone());
        if !upstream.audiences.is_empty() {
            jwt.push(Arc::new(JwtUpstream::new(upstream, claims, keys.clone())));
        }
        if let Some(introspecting) = OpaqueUpstream::from_settings(upstream, claims, metadata, keys, http.clone()) {
            opaque.push((Arc::new(introspecting), upstream.default_for_opaque));
        }
    }
    Routes::new(jwt, opaque)
}

/// The in-process cache, backed by Redis when `cache.redis_url` is set; other replicas'
/// invalidations are followed in the background.
fn identity_service(
    settings: &Settings,
    routes: Routes,
    clock: SharedClock,
    metrics: Metrics,
) -> anyhow::Result<IdentityService> {
    let bounds = settings.identity_cache_bounds();
    let local = MemoryCache::bounded(bounds);
    let observed = local.clone();
    metrics.observe_at_scrape(move |metrics| {
        let (bytes, records) = observed.weighed_size();
        metrics.identity_cache_size(records, bytes, bounds.max_bytes);
    });
    let shared: Option<Arc<dyn IdentityCache>> = match settings.redis() {
        Some(redis) => {
            let cache =
                RedisCache::new(&redis, clock.clone(), metrics.clone()).context("configuring the Redis cache")?;
            tokio::spawn(cache.follow_invalidations(local.clone()));
            Some(Arc::new(cache))
        }
        None => None,
    };
    let budget = settings.rate_limits.first_sight_per_client.quota(None);
    if budget.is_some() {
        for client in &settings.clients {
            metrics.first_sight_refusals(&client.client_id, 0);
        }
    }
    let protection = Protection::new(&settings.upstreams, budget, clock, metrics.clone());
    Ok(IdentityService::new(routes, local, shared, settings.cache_policy(), metrics, protection))
}

/// Graceful shutdown on SIGTERM or SIGINT: stop accepting, let in-flight requests finish.
/// The handlers are registered before the server reports that it listens, so a signal sent
/// right after startup is never fatal.
fn stop_on_signal(
    handle: actix_web::dev::ServerHandle,
    stopping: tokio::sync::watch::Sender<bool>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down gracefully");
        stopping.send_replace(true);
        handle.stop(true).await;
    });
    Ok(())
}

/// Envoy ext_authz on its own listener, on the runtime that builds the application; it stops
/// with the HTTP server. Returns the bound port.
fn serve_ext_authz(
    address: std::net::SocketAddr,
    forward_auth: Arc<ForwardAuth>,
    settings: &Settings,
    mut stop_requested: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u16> {
    let service = crate::grpc::ExtAuthz::new(forward_auth, settings.server.issuer.as_str().into());
    let stop = async move {
        let _ = stop_requested.wait_for(|stopping| *stopping).await;
    };
    let (bound, server) =
        service.serve(address, stop).with_context(|| format!("cannot listen on {address} for ext_authz"))?;
    tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(error = %crate::report::Chain(&error), "the ext_authz server stopped");
        }
    });
    Ok(bound.port())
}

/// Every replica reloads the key set on a timer, rotating when due, so all publish the same
/// JWKS within one interval.
async fn maintain_keys(keys: Arc<KeyRing>, clock: SharedClock, every: std::time::Duration) {
    loop {
        clock.sleep(every).await;
        if let Err(error) = keys.maintain(clock.now()).await {
            tracing::warn!(error = %crate::report::Chain(&error), "key maintenance failed; serving the keys already loaded");
        }
    }
}

/// Every scope some client may obtain (RFC 8414 `scopes_supported`).
fn supported_scopes(settings: &Settings) -> Vec<String> {
    let mut scopes: Vec<String> = settings.clients.iter().flat_map(|c| c.scopes.iter().cloned()).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}
