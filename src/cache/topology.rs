//! Which Redis we talk to and how to reach it: a standalone server, a primary found through
//! Sentinel, or a Cluster; over TLS (`rediss://`) when asked, as an ACL user when given one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates, TlsMode};

use crate::vocabulary::ClientSecret;

/// Where the shared cache lives and how long we wait for it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub topology: RedisTopology,
    /// ACL user for the data nodes (not the sentinels); wins over one in a URL.
    pub username: Option<String>,
    /// Password for the data nodes (not the sentinels); wins over one in a URL.
    pub password: Option<ClientSecret>,
    /// PEM roots for `rediss://` servers signed by a private CA; the system's roots otherwise.
    pub tls_ca_file: Option<PathBuf>,
    pub prefix: String,
    /// Bound on every call; past it, the call counts as failed.
    pub timeout: Duration,
    /// How long a subject's index of keys is kept (the longest an entry lives).
    pub index_ttl: Duration,
}

impl RedisSettings {
    /// A standalone Redis at `url` under `prefix`, with the defaults of the configuration.
    pub fn standalone(url: &str, prefix: &str) -> Self {
        Self {
            topology: RedisTopology::Url(url.to_owned()),
            username: None,
            password: None,
            tls_ca_file: None,
            prefix: prefix.to_owned(),
            timeout: Duration::from_millis(250),
            index_ttl: Duration::from_secs(3600),
        }
    }
}

/// How the Redis deployment is laid out.
#[derive(Clone)]
pub enum RedisTopology {
    /// `redis://` or `rediss://` (one server), or `redis+sentinel://` / `rediss+sentinel://`
    /// `[user:password@]host:port[,host:port…]/master[/db]`, where the credentials are the data
    /// nodes' and the sentinels need none.
    Url(String),
    /// The primary that the sentinels name `master`. Each sentinel is `host:port` or a URL
    /// (`rediss://` for TLS, with the sentinel's own credentials); the data nodes use TLS when
    /// the sentinels do.
    Sentinel { sentinels: Vec<String>, master: String },
    /// A Redis Cluster, found from these seed nodes (URLs).
    Cluster { nodes: Vec<String> },
}

/// URLs may carry passwords: shown without them.
impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |urls: &[String]| urls.iter().map(|url| redact_password(url)).collect::<Vec<_>>();
        match self {
            Self::Url(url) => f.debug_tuple("Url").field(&redact_password(url)).finish(),
            Self::Sentinel { sentinels, master } => {
                f.debug_struct("Sentinel").field("sentinels", &redact(sentinels)).field("master", master).finish()
            }
            Self::Cluster { nodes } => f.debug_struct("Cluster").field("nodes", &redact(nodes)).finish(),
        }
    }
}

/// `scheme://user:password@host…` (or a sentinel's `user:password@host…`, without a scheme)
/// with the credentials replaced by `…`.
fn redact_password(url: &str) -> String {
    let credentials_start = url.find("://").map_or(0, |scheme_end| scheme_end + 3);
    match url.rfind('@') {
        Some(at) if at >= credentials_start => format!("{}…@{}", &url[..credentials_start], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// What the configuration asks for, parsed and checked, before any connection is made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TopologyError(String);

impl TopologyError {
    fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl From<redis::RedisError> for TopologyError {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

/// The sentinel form of a topology, wherever it was written.
struct SentinelSpec {
    sentinels: Vec<ConnectionInfo>,
    master: String,
    db: i64,
    tls: bool,
    username: Option<String>,
    password: Option<String>,
}

const SENTINEL_SCHEMES: [(&str, bool); 2] = [("redis+sentinel://", false), ("rediss+sentinel://", true)];

fn parse_sentinel_url(url: &str) -> Option<Result<SentinelSpec, TopologyError>> {
    let (rest, tls) = SENTINEL_SCHEMES.iter().find_map(|(scheme, tls)| url.strip_prefix(scheme).map(|r| (r, *tls)))?;
    Some(parse_sentinel_parts(rest, tls))
}

fn parse_sentinel_parts(rest: &str, tls: bool) -> Result<SentinelSpec, TopologyError> {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').ok_or_else(|| TopologyError::new("names no master (…/master)"))?;
    let mut path = path.split('/');
    let master = path.next().filter(|m| !m.is_empty()).ok_or_else(|| TopologyError::new("names no master"))?;
    let db = match path.next().filter(|d| !d.is_empty()) {
        Some(db) => db.parse().map_err(|_| TopologyError::new(format!("database {db:?} is not a number")))?,
        None => 0,
    };
    let scheme = if tls { "rediss" } else { "redis" };
    let sentinels =
        hosts.split(',').map(|host| format!("{scheme}://{host}").into_connection_info()).collect::<Result<_, _>>()?;
    let decode =
        |text: &str| url::form_urlencoded::parse(format!("v={text}").as_bytes()).next().map(|(_, v)| v.into_owned());
    let (username, password) = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, password)) => (decode(user).filter(|u| !u.is_empty()), decode(password)),
            None => (decode(userinfo), None),
        },
        None => (None, None),
    };
    Ok(SentinelSpec { sentinels, master: master.to_owned(), db, tls, username, password })
}

fn sentinel_address(address: &str) -> RedisResult<ConnectionInfo> {
    if address.contains("://") {
        address.into_connection_info()
    } else {
        format!("redis://{address}").into_connection_info()
    }
}

/// How connections are made for one configured topology.
pub enum Connector {
    Standalone(redis::Client),
    /// Asked again for the primary on every new connection, so a failover is followed.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
    Cluster(ClusterRecipe),
}

/// What every cluster client of one topology is built from (the data connection's, and the
/// subscriber's with its push channel).
pub struct ClusterRecipe {
    nodes: Vec<ConnectionInfo>,
    username: Option<String>,
    password: Option<String>,
    root_cert: Option<Vec<u8>>,
    timeout: Duration,
}

impl ClusterRecipe {
    pub fn builder(&self) -> ClusterClientBuilder {
        let mut builder = ClusterClientBuilder::new(self.nodes.clone());
        if let Some(username) = &self.username {
            builder = builder.username(username);
        }
        if let Some(password) = &self.password {
            builder = builder.password(password);
        }
        if let Some(root_cert) = &self.root_cert {
            builder = builder.certs(TlsCertificates { client_tls: None, root_cert: Some(root_cert.clone()) });
        }
        // Our own timeout and backoff bound every call: no retries that outlast them.
        builder
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .retries(1)
            .min_retry_wait(10)
            .max_retry_wait(self.timeout.as_millis().try_into().unwrap_or(u64::MAX))
    }
}

impl Connector {
    /// Checks the settings and prepares the clients; connects to nothing.
    pub fn new(settings: &RedisSettings) -> Result<Self, TopologyError> {
        let root_cert = match &settings.tls_ca_file {
            Some(path) => {
                Some(std::fs::read(path).map_err(|e| TopologyError::new(format!("{}: {e}", path.display())))?)
            }
            None => None,
        };
        let password = settings.password.as_ref().map(|p| p.expose_secret().to_owned());
        match &settings.topology {
            RedisTopology::Url(url) => match parse_sentinel_url(url) {
                Some(spec) => {
                    let mut spec = spec?;
                    spec.username = settings.username.clone().or(spec.username);
                    spec.password = password.or(spec.password);
                    let master = spec.master.clone();
                    Ok(Self::Sentinel { client: tokio::sync::Mutex::new(sentinel_client(spec, root_cert)?), master })
                }
                None => {
                    Ok(Self::Standalone(standalone_client(url, settings.username.as_deref(), password, root_cert)?))
                }
            },
            RedisTopology::Sentinel { sentinels, master } => {
                if sentinels.is_empty() || master.is_empty() {
                    return Err(TopologyError::new("Sentinel needs sentinels and a master name"));
                }
                let sentinels = sentinels.iter().map(|s| sentinel_address(s)).collect::<Result<Vec<_>, _>>()?;
                let tls = sentinels.iter().any(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. }));
                let spec = SentinelSpec {
                    sentinels,
                    master: master.clone(),
                    db: 0,
                    tls,
                    username: settings.username.clone(),
                    password,
                };
                Ok(Self::Sentinel {
                    client: tokio::sync::Mutex::new(sentinel_client(spec, root_cert)?),
                    master: master.clone(),
                })
            }
            RedisTopology::Cluster { nodes } => {
                if nodes.is_empty() {
                    return Err(TopologyError::new("a cluster needs at least one node"));
                }
                let nodes = nodes.iter().map(|n| n.as_str().into_connection_info()).collect::<Result<Vec<_>, _>>()?;
                let recipe = ClusterRecipe {
                    nodes,
                    username: settings.username.clone(),
                    password,
                    root_cert,
                    timeout: settings.timeout,
                };
                recipe.builder().build()?;
                Ok(Self::Cluster(recipe))
            }
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// Whether keys of the layout before hash tags may exist: only a standalone Redis had them.
    pub fn may_hold_legacy_keys(&self) -> bool {
        matches!(self, Self::Standalone(_))
    }

    /// The client of the server to talk to now (for Sentinel: the primary it names now).
    pub async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Standalone(client) => Ok(client.clone()),
            Self::Sentinel { client, .. } => client.lock().await.async_get_client().await,
            Self::Cluster(_) => {
                Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "a cluster has no single server")))
            }
        }
    }
}

fn standalone_client(
    url: &str,
    username: Option<&str>,
    password: Option<String>,
    root_cert: Option<Vec<u8>>,
) -> Result<redis::Client, TopologyError> {
    let info = url.into_connection_info()?;
    let mut redis = info.redis_settings().clone();
    if let Some(username) = username {
        redis = redis.set_username(username);
    }
    if let Some(password) = password {
        redis = redis.set_password(password);
    }
    let info = info.set_redis_settings(redis);
    Ok(match root_cert {
        Some(root_cert) => {
            redis::Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(root_cert) })?
        }
        None => redis::Client::open(info)?,
    })
}

fn sentinel_client(spec: SentinelSpec, root_cert: Option<Vec<u8>>) -> Result<SentinelClient, TopologyError> {
    let sentinel_auth =
        spec.sentinels.iter().map(ConnectionInfo::redis_settings).find(|r| r.password().is_some()).cloned();
    let addresses: Vec<ConnectionAddr> = spec.sentinels.iter().map(|s| s.addr().clone()).collect();
    let mut builder = SentinelClientBuilder::new(addresses, &spec.master, SentinelServerType::Master)?
        .set_client_to_redis_db(spec.db);
    if let Some(auth) = sentinel_auth {
        if let Some(username) = auth.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = auth.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(username) = &spec.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &spec.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if spec.tls {
        builder =
            builder.set_client_to_redis_tls_mode(TlsMode::Secure).set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(root_cert) = root_cert {
            let certificates = TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates);
        }
    }
    Ok(builder.build()?)
}

/// Checks a topology as written in the configuration, without connecting.
pub fn check(settings: &RedisSettings) -> Result<(), TopologyError> {
    Connector::new(settings).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_url_names_sentinels_master_database_and_credentials() {
        let spec =
            parse_sentinel_url("redis+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2:26380/cache/2").unwrap().unwrap();
        assert_eq!(spec.sentinels.len(), 2);
        assert_eq!(spec.master, "cache");
        assert_eq!(spec.db, 2);
        assert_eq!((spec.username.as_deref(), spec.password.as_deref()), (Some("app"), Some("s@cret")));
        assert!(!spec.tls);
    }

    #[test]
    fn a_sentinel_url_without_a_master_is_refused() {
        assert!(parse_sentinel_url("redis+sentinel://10.0.0.1:26379").unwrap().is_err());
        assert!(parse_sentinel_url("redis://10.0.0.1:6379").is_none());
    }

    #[test]
    fn passwords_in_urls_are_never_printed() {
        let topology = RedisTopology::Url("redis://user:hunter2@redis:6379".into());
        assert_eq!(format!("{topology:?}"), r#"Url("redis://…@redis:6379")"#);
    }

    #[test]
    fn passwords_of_sentinels_written_without_a_scheme_are_never_printed() {
        let topology = RedisTopology::Sentinel { sentinels: vec!["user:hunter2@s1:26379".into()], master: "m".into() };
        assert!(!format!("{topology:?}").contains("hunter2"), "{topology:?}");
    }
}
