//! The log subscriber: `--log-format text|json`, `--log-level` (or `RUST_LOG`, which wins at
//! start), and `CONFIG SET loglevel` changing the level while the node runs.
//!
//! Cluster events (elections, membership changes, moves, node down/up, snapshots) are logged
//! at `info` with `shard` / `group` and `node` fields, so `--log-format json` lines can be
//! filtered by them.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

type Handle = reload::Handle<EnvFilter, Registry>;

static RELOAD: OnceLock<Handle> = OnceLock::new();

/// Installs the process's subscriber (once; later calls do nothing).
pub fn init(level: &str, format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| filter_for(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if format == "json" {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if installed.is_ok() {
        let _ = RELOAD.set(handle);
    }
}

/// Changes the level of a running node (`CONFIG SET loglevel`).
pub fn set_level(level: &str) -> Result<(), String> {
    let filter = filter_for(level)?;
    match RELOAD.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Redis's level names (`debug verbose notice warning nothing`) or a `RUST_LOG`-style filter.
pub fn filter_for(level: &str) -> Result<EnvFilter, String> {
    let directive = match level.to_ascii_lowercase().as_str() {
        "verbose" => "debug".to_owned(),
        "notice" => "info".to_owned(),
        "warning" => "warn".to_owned(),
        "nothing" => "off".to_owned(),
        other => other.to_owned(),
    };
    EnvFilter::try_new(&directive).map_err(|e| format!("invalid log level '{level}': {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_level_names_and_filters_are_accepted() {
        for ok in [
            "debug",
            "verbose",
            "notice",
            "warning",
            "nothing",
            "shoal_server=debug",
        ] {
            assert!(filter_for(ok).is_ok(), "{ok}");
        }
        assert!(filter_for("shoal_server=loud").is_err());
    }
}
