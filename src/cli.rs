//! The command line: serve, check-config, openapi, hash-secret.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::keys::KeyRing;
use crate::startup::Application;
use crate::telemetry::{self, LogFormat};

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
    },
    /// Add a signing key: published at once, signing after `keys.publish_ahead`; the keys it
    /// replaces leave the JWKS once every token they signed has expired.
    RotateKey {
        #[arg(long, env = "TOKEN_EXCHANGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Read a client secret on standard input and print its argon2id hash.
    HashSecret,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config, cli.log_format),
        Command::CheckConfig { config } => match Settings::load(config.as_deref()) {
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
        Command::Openapi => match crate::http::openapi().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(error) => failure(&error),
        },
        Command::HashSecret => hash_secret(),
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
            failure(&*error)
        }
    }
}

fn rotate_key(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return failure(&error),
    };
    let result = runtime.block_on(async {
        let database = crate::storage::Database::open(&settings.storage).await?;
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let store = database.key_store();
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
        Err(error) => failure(&format!("{error:#}")),
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
