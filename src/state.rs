//! The services every handler shares, built once at startup.

use std::sync::Arc;

use crate::clients::ClientRegistry;
use crate::clock::SharedClock;
use crate::exchange::ExchangeService;
use crate::identity::IdentityService;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::oauth::ServerMetadata;
use crate::storage::Database;

pub struct AppState {
    pub clients: ClientRegistry,
    pub exchange: ExchangeService,
    pub identities: Arc<IdentityService>,
    pub metrics: Metrics,
    pub keys: Arc<KeyRing>,
    pub database: Database,
    pub metadata: ServerMetadata,
    pub max_body_bytes: usize,
    pub clock: SharedClock,
}
