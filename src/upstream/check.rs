//! `check-config --online`: what an upstream's provider says of itself, asked before any
//! request needs it, and whether that agrees with the configuration.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use url::Url;

use super::UpstreamHttp;
use super::metadata::{MetadataCache, MetadataEndpoint, ProviderMetadata};
use super::settings::{Endpoint, UpstreamSettings};
use crate::vocabulary::ValidationError;

/// Whether an endpoint was written in the configuration or read from the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointOrigin {
    Configured,
    Discovered,
}

/// What an online check learnt of one upstream.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Where the metadata was found; `None` when the upstream discovers nothing.
    pub metadata_location: Option<Url>,
    /// Every endpoint the upstream will call (by metadata member name), and where it came from.
    pub endpoints: Vec<(&'static str, Url, EndpointOrigin)>,
    /// The provider's `*_signing_alg_values_supported` lists, by member name.
    pub signing_algorithms: Vec<(&'static str, Vec<String>)>,
}

/// Fetches the metadata of an upstream that discovers any endpoint, and checks it: it names
/// the configured issuer, every endpoint to be discovered, and, for signed answers, an
/// algorithm the upstream accepts.
pub async fn check_online(settings: &UpstreamSettings, http: Arc<UpstreamHttp>) -> Result<Discovered, ValidationError> {
    if !settings.discovers() {
        return Ok(Discovered { metadata_location: None, endpoints: configured(settings), signing_algorithms: vec![] });
    }
    let metadata = MetadataCache::for_upstream(settings, http).fetch().await?;
    let mut endpoints = Vec::new();
    if settings.needs_keys() {
        endpoints.push(resolve(
            settings.jwks_uri.clone().map(Endpoint::At).as_ref(),
            MetadataEndpoint::Jwks,
            &metadata,
        )?);
    }
    if let Some(endpoint) = &settings.introspection_endpoint {
        endpoints.push(resolve(Some(endpoint), MetadataEndpoint::Introspection, &metadata)?);
    }
    if let Some(endpoint) = &settings.userinfo_endpoint {
        endpoints.push(resolve(Some(endpoint), MetadataEndpoint::Userinfo, &metadata)?);
    }
    if settings.signs_introspection() {
        shares_an_algorithm(settings, "introspection", &metadata.introspection_signing_alg_values_supported)?;
    }
    if settings.signs_userinfo() {
        shares_an_algorithm(settings, "userinfo", &metadata.userinfo_signing_alg_values_supported)?;
    }
    Ok(Discovered {
        metadata_location: metadata.location,
        endpoints,
        signing_algorithms: vec![
            ("id_token_signing_alg_values_supported", metadata.id_token_signing_alg_values_supported),
            ("introspection_signing_alg_values_supported", metadata.introspection_signing_alg_values_supported),
            ("userinfo_signing_alg_values_supported", metadata.userinfo_signing_alg_values_supported),
        ],
    })
}

/// The endpoints of an upstream that discovers none.
fn configured(settings: &UpstreamSettings) -> Vec<(&'static str, Url, EndpointOrigin)> {
    settings
        .configured_endpoints()
        .into_iter()
        .filter_map(|(member, url)| Some((member, url?.clone(), EndpointOrigin::Configured)))
        .collect()
}

fn resolve(
    endpoint: Option<&Endpoint>,
    which: MetadataEndpoint,
    metadata: &ProviderMetadata,
) -> Result<(&'static str, Url, EndpointOrigin), ValidationError> {
    match endpoint {
        Some(Endpoint::At(url)) => Ok((which.member(), url.clone(), EndpointOrigin::Configured)),
        Some(Endpoint::Discover) | None => Ok((which.member(), metadata.endpoint(which)?, EndpointOrigin::Discovered)),
    }
}

/// A provider that advertises its signing algorithms must use one the upstream accepts.
fn shares_an_algorithm(
    settings: &UpstreamSettings,
    answer: &str,
    advertised: &[String],
) -> Result<(), ValidationError> {
    let accepted = |name: &String| name.parse::<Algorithm>().is_ok_and(|alg| settings.algorithms.contains(&alg));
    if advertised.is_empty() || advertised.iter().any(accepted) {
        return Ok(());
    }
    Err(ValidationError::Misconfigured(format!(
        "the provider signs {answer} answers with {}, none of which is in algorithms",
        advertised.join(", ")
    )))
}
