//! The services every handler shares, built once at startup.

use std::sync::Arc;

use crate::clients::ClientRegistry;
use crate::clock::SharedClock;
use crate::exchange::ExchangeService;
use crate::gateway::ForwardAuth;
use crate::identity::IdentityService;
use crate::keys::KeySource;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::oauth::ServerMetadata;
use crate::rate_limit::RateLimits;
use crate::storage::Database;

/// How much of a request body we wait for, and how long.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    /// From the end of the headers to the last byte of the body.
    pub read_timeout: std::time::Duration,
}

pub struct AppState {
    /// Replaced by a configuration reload.
    pub clients: Arc<Live<ClientRegistry>>,
    pub exchange: Arc<ExchangeService>,
    pub forward_auth: Arc<ForwardAuth>,
    /// `iss` of minted tokens, and the realm of Bearer challenges.
    pub issuer: Arc<str>,
    pub identities: Arc<IdentityService>,
    pub metrics: Metrics,
    /// Restart-only: a reload leaves the limits (and their counts) as they are.
    pub rate_limits: Arc<RateLimits>,
    pub keys: Arc<dyn KeySource>,
    pub database: Database,
    pub metadata: Live<ServerMetadata>,
    pub bodies: BodyLimits,
    /// The port of the separate metrics listener, when there is one.
    pub metrics_port: Option<u16>,
    pub clock: SharedClock,
}
