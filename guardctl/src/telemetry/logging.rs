//! Logs of `guardctl serve`: `tracing` events written to stderr, one line each, as text for people
//! or as JSON objects for log collectors.
//!
//! What is logged is chosen so that no secret ever reaches a log: admin actions name the key-id,
//! org, role and counts, never a token, a hash or the admin token.

use anyhow::Context;
use clap::ValueEnum;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Default filter: the start-up line, admin actions and warnings; `debug` adds each sync request.
pub const DEFAULT_LEVEL: &str = "info";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event: time, level, module, message, then key=value fields
    Text,
    /// One JSON object per line: timestamp, level, target, message and the event's fields
    Json,
}

/// Parses a filter in `RUST_LOG` form: `info`, `debug`, `guardctl=debug,warn`.
pub fn parse_filter(directives: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::builder().parse(directives).with_context(|| {
        format!("invalid log level {directives:?} (try info, debug or guardctl=debug,warn)")
    })
}

/// Installs the process-wide subscriber writing to stderr. Call once, before serving.
pub fn init(format: LogFormat, directives: &str) -> anyhow::Result<()> {
    let filter = parse_filter(directives)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn filters_in_rust_log_form() {
        for good in ["info", "debug", "warn", "guardctl=debug,warn", "off"] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        for bad in ["guardctl=shouty", "info,guardctl=[", "=debug"] {
            let err = parse_filter(bad).unwrap_err().to_string();
            assert!(err.contains("invalid log level"), "{err}");
        }
    }

    #[test]
    fn format_names() {
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("xml", true).is_err());
    }
}
