//! `mcp-demo-server [--listen ADDR] [--allowed-hosts LIST]`

use std::{net::SocketAddr, process::ExitCode};

use mcp_demo_server::{Options, DEBUG_LAST_REQUEST_PATH, MCP_PATH};
use tracing_subscriber::{filter::Targets, layer::SubscriberExt, util::SubscriberInitExt};

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

const USAGE: &str = "\
Usage: mcp-demo-server [--listen ADDR] [--allowed-hosts LIST]

Demo MCP server (streamable HTTP) on /api/mcp, plus GET /debug/last-request.

Options:
  --listen ADDR         Address to listen on [env: MCP_DEMO_LISTEN] [default: 127.0.0.1:8000]
  --allowed-hosts LIST  Comma-separated Host header allow-list (host or host:port), `*` for any
                        [env: MCP_DEMO_ALLOWED_HOSTS] [default: localhost,127.0.0.1,::1]
  -h, --help            Print this help

Logging (stderr): RUST_LOG=LEVEL or TARGET=LEVEL,... (e.g. `warn,mcp_demo_server=info`), default info.
";

struct Args {
    listen: String,
    allowed_hosts: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut listen = std::env::var("MCP_DEMO_LISTEN").ok();
    let mut allowed_hosts = std::env::var("MCP_DEMO_ALLOWED_HOSTS").ok();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        let slot = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => &mut listen,
            "--allowed-hosts" => &mut allowed_hosts,
            other => return Err(format!("unknown argument `{other}`")),
        };
        let value = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?,
        };
        *slot = Some(value);
    }
    Ok(Some(Args {
        listen: listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        allowed_hosts,
    }))
}

fn options(args: &Args) -> Options {
    let allowed_hosts = args.allowed_hosts.as_deref().map(|list| {
        if list.trim() == "*" {
            Vec::new()
        } else {
            list.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect()
        }
    });
    Options { allowed_hosts }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!("cannot install SIGTERM handler: {e}");
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("SIGINT received, shutting down");
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received, shutting down");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();

    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mcp-demo-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr: SocketAddr = match args.listen.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!(
                "mcp-demo-server: invalid listen address `{}`: {e}",
                args.listen
            );
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        "mcp-demo-server listening on {local} (MCP: http://{local}{MCP_PATH}, debug: http://{local}{DEBUG_LAST_REQUEST_PATH})"
    );

    match mcp_demo_server::serve_with(listener, options(&args), shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("mcp-demo-server stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}
