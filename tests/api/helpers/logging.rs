//! `TEST_LOG=1 cargo nextest run --no-capture NAME` shows what the apps of a test logged.
//! Without `TEST_LOG` nothing is installed and tests stay quiet. `RUST_LOG` filters as usual.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs, once per process and only when `TEST_LOG` is set (to any value), a subscriber
/// that writes pretty logs through the test harness's writer.
pub fn init_test_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // Another subscriber may already be installed (a test of the binary's own setup): keep it.
        let _ = tracing_subscriber::fmt().pretty().with_env_filter(filter).with_test_writer().try_init();
    });
}
