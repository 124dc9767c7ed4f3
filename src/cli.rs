//! The command line: serve, check-config, rotate-key, openapi, hash-secret, demo, verify-token.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::demo::DemoOptions;
use crate::keys::KeyRing;
use crate::startup::Application;
use crate::telemetry::{self, LogFormat};
use crate::upstream::{Discovered, EndpointOrigin, UpstreamHttp};

/// Exit status for a configuration that cannot be used.
const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "token-exchange", version, about = "RFC 8693 token exchange service")]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json, env = "TOKEN_EXCHANGE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve {
        /// TOML configuration file; without one the embedded defaults apply.
        #[arg(long, env = "TOKEN_EXCHANGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, then exit 0 (valid) or 2 (invalid).
    CheckConfig {
        #[arg(long, env = "TOKEN_EXCHANGE_CONFIG")]
        config: Option<PathBuf>,
        /// Also fetch the metadata of every upstream that discovers an endpoint, print what it
        /// names, and fail when a provider cannot be reached (exit 1) or its metadata
        /// disagrees with the configuration (exit 2).
        #[arg(long)]
        online: bool,
    },
    /// Add a signing key: published at once, signing after `keys.publish_ahead`; the keys it
    /// replaces leave the JWKS once every token they signed has expired.
    RotateKey {
        #[arg(long, env = "TOKEN_EXCHANGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Seal every signing key under the configured key-encryption key (`keys.encryption_key_file`
    /// or TOKEN_EXCHANGE_KEK), opening them with the old one given here once. Safe while
    /// replicas run: each key is replaced only if nobody changed it in between.
    Rekey {
        #[arg(long, env = "TOKEN_EXCHANGE_CONFIG")]
        config: Option<PathBuf>,
        /// The key-encryption key the keys are sealed under now.
        #[arg(long)]
        old_key_file: PathBuf,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Read a client secret on standard input and print its argon2id hash.
    HashSecret,
    /// Try the service: run it on its embedded defaults with a built-in DEMO identity provider,
    /// a demo client and a forward-auth route, on loopback only, and print curl commands that
    /// walk through it. Not for real use (that is `serve`).
    Demo {
        /// Where token-exchange listens (loopback only); port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the DEMO identity provider listens (loopback only); port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8081")]
        idp_listen: SocketAddr,
    },
    /// Verify a minted token as a downstream service does: signature against the JWKS, typ
    /// at+jwt, iss, aud, exp. Prints the claims; exits 1 when the token is not valid.
    VerifyToken {
        /// Where the keys are published, e.g. http://127.0.0.1:8080/.well-known/jwks.json.
        #[arg(long)]
        jwks_url: url::Url,
        /// The expected `iss` (our `server.issuer`).
        #[arg(long)]
        issuer: String,
        /// The audience this verifier is (the token's `aud` must name it).
        #[arg(long)]
        audience: String,
        /// The compact JWT.
        token: String,
    },
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config, cli.log_format),
        Command::CheckConfig { config, online } => match Settings::load(config.as_deref()) {
            Ok(settings) if online => check_online(&settings),
            Ok(_) => {
                println!("configuration is valid");
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error),
        },
        Command::RotateKey { config } => match Settings::load(config.as_deref()) {
            Ok(settings) => rotate_key(&settings),
            Err(error) => config_failure(&error),
        },
        Command::Rekey { config, old_key_file } => match Settings::load(config.as_deref()) {
            Ok(mut settings) => {
                settings.keys.previous_encryption_key_file = Some(old_key_file);
                rekey(&settings)
            }
            Err(error) => config_failure(&error),
        },
        Command::Openapi => match crate::http::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => failure(&error),
        },
        Command::HashSecret => hash_secret(),
        Command::Demo { listen, idp_listen } => demo(DemoOptions { listen, idp_listen }, cli.log_format),
        Command::VerifyToken { jwks_url, issuer, audience, token } => {
            verify_token(&jwks_url, &issuer, &audience, token.trim())
        }
    }
}

fn serve(config: Option<PathBuf>, log_format: LogFormat) -> ExitCode {
    let settings = match Settings::load(config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => return config_failure(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    // The trace exporter talks gRPC on this runtime.
    let traces = runtime.block_on(async { telemetry::init_with_traces(log_format, &settings.telemetry) });
    let result = runtime.block_on(async {
        let application = Application::build(settings).await?;
        application.run_until_stopped().await?;
        anyhow::Ok(())
    });
    traces.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "token-exchange stopped");
            custody_failure(&error)
        }
    }
}

/// Asks each upstream's provider what it publishes and prints it; a provider that cannot be
/// reached fails with exit 1, metadata that disagrees with the configuration with exit 2.
fn check_online(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    let http = match UpstreamHttp::new(&settings.upstream_http, crate::metrics::Metrics::new(), clock) {
        Ok(http) => std::sync::Arc::new(http),
        Err(error) => return failure(&error),
    };
    let mut exit = ExitCode::SUCCESS;
    for upstream in &settings.upstreams {
        match runtime.block_on(crate::upstream::check_online(upstream, http.clone())) {
            Ok(discovered) => print_discovered(&upstream.name, &discovered),
            Err(error) => {
                eprintln!("error: upstream {:?} ({}): {error}", upstream.name, upstream.issuer);
                let unreachable = matches!(error, crate::vocabulary::ValidationError::Unavailable { .. });
                if exit == ExitCode::SUCCESS || !unreachable {
                    exit = if unreachable { ExitCode::FAILURE } else { ExitCode::from(EXIT_BAD_CONFIG) };
                }
            }
        }
    }
    if exit == ExitCode::SUCCESS {
        println!("configuration is valid; every upstream's provider agrees with it");
    }
    exit
}

fn print_discovered(name: &str, discovered: &Discovered) {
    match &discovered.metadata_location {
        Some(location) => println!("upstream {name:?}: metadata at {location}"),
        None => println!("upstream {name:?}: nothing to discover, every endpoint it calls is configured"),
    }
    for (member, url, origin) in &discovered.endpoints {
        let origin = match origin {
            EndpointOrigin::Configured => "configured",
            EndpointOrigin::Discovered => "discovered",
        };
        println!("  {member}: {url} ({origin})");
    }
    for (member, algorithms) in &discovered.signing_algorithms {
        let listed = if algorithms.is_empty() { "(not published)".to_owned() } else { algorithms.join(" ") };
        println!("  {member}: {listed}");
    }
}

fn demo(options: DemoOptions, log_format: LogFormat) -> ExitCode {
    if let Err(refused) = options.check() {
        eprintln!("error: {refused}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("token-exchange"));
    telemetry::init(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    match runtime.block_on(crate::demo::run(options, &program)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "token-exchange demo stopped");
            failure(&format!("{error:#}"))
        }
    }
}

fn verify_token(jwks_url: &url::Url, issuer: &str, audience: &str, token: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    match runtime.block_on(crate::demo::verify_token(jwks_url, issuer, audience, token, now)) {
        Ok(verified) => {
            println!(
                "valid: signature by key {} ({:?}) from {jwks_url}; typ at+jwt; iss {issuer}; aud {audience}; \
                 expires in {} s",
                verified.kid,
                verified.algorithm,
                verified.expires_in.as_secs()
            );
            match serde_json::to_string_pretty(&verified.claims) {
                Ok(claims) => println!("{claims}"),
                Err(error) => return failure(&error),
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("invalid: {error}");
            ExitCode::FAILURE
        }
    }
}

fn rekey(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    let result = runtime.block_on(async {
        let (custody, _) = settings.key_custody()?;
        let database = crate::storage::Database::open(&settings.storage).await?;
        let store = crate::keys::SealedKeyStore::new(database.key_store(), std::sync::Arc::new(custody));
        let resealed = store.reseal_all().await;
        database.close().await;
        anyhow::Ok(resealed?)
    });
    match result {
        Ok(count) => {
            println!("re-sealed {count} signing key(s) under the configured key-encryption key");
            ExitCode::SUCCESS
        }
        Err(error) => custody_failure(&error),
    }
}

/// A key-encryption key that is missing, malformed or wrong is a configuration problem (exit
/// 2); anything else is a failure (exit 1).
fn custody_failure(error: &anyhow::Error) -> ExitCode {
    let custody = error.chain().any(|cause| {
        cause.is::<crate::config::KekError>()
            || cause.is::<crate::keys::CustodyError>()
            || cause
                .downcast_ref::<crate::keys::StoreError>()
                .is_some_and(|e| matches!(e, crate::keys::StoreError::Custody(_)))
            || cause
                .downcast_ref::<crate::keys::KeyRingError>()
                .is_some_and(|e| matches!(e, crate::keys::KeyRingError::Store(crate::keys::StoreError::Custody(_))))
    });
    eprintln!("error: {error:#}");
    if custody { ExitCode::from(EXIT_BAD_CONFIG) } else { ExitCode::FAILURE }
}

fn rotate_key(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    let result = runtime.block_on(async {
        let database = crate::storage::Database::open(&settings.storage).await?;
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let store = crate::startup::sealed_key_store(settings, &database)?;
        // The KEK must open the keys already stored before a new one is sealed beside them.
        store.load_all().await?;
        let added =
            KeyRing::add_key(&*store, settings.tokens.algorithm, settings.rotation_policy(), now, false, None).await?;
        database.close().await;
        anyhow::Ok(added)
    });
    match result {
        Ok(Some(key)) => {
            println!("added {} key {}; it signs from {} (Unix time)", key.algorithm, key.kid, key.activates_at);
            ExitCode::SUCCESS
        }
        Ok(None) => failure(&"the key was not stored"),
        Err(error) => custody_failure(&error),
    }
}

fn hash_secret() -> ExitCode {
    let mut input = String::new();
    if let Err(error) = std::io::stdin().read_to_string(&mut input) {
        return failure(&error);
    }
    let secret = input.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&input);
    if secret.is_empty() {
        eprintln!("error: the secret on standard input is empty");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    match crate::clients::hash_secret(secret) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(error) => failure(&error),
    }
}

fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_BAD_CONFIG)
}

fn failure(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}
