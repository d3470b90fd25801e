//! The `guardctl` command line: `serve` runs the control plane, `keys ...` talks to it.

use clap::{Args, Parser, Subcommand};
use guardctl::client::{self, AdminClient, CreateKeyParams};
use guardctl::human;
use guardctl::import;
use guardctl::server::{self, ServeConfig, DEFAULT_SYNC_PAGE_SIZE};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "guardctl",
    version,
    about = "Control plane for mcp-guard: issues API keys and serves their hashes to the proxies",
    long_about = "Control plane for mcp-guard.\n\n\
        `guardctl serve` keeps the API keys in SQLite (hashes only; a token is shown once, at \
        creation) and serves two HTTP APIs: the admin API used by `guardctl keys`, and the \
        key-set sync API that every mcp-guard proxy long-polls.\n\n\
        `guardctl keys` creates, lists, revokes and bulk-imports keys through a running server.",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control-plane server (admin API and key-set sync API)
    Serve(ServeArgs),
    /// Create, list, revoke and import API keys through a running server
    Keys(KeysArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (host:port; port 0 picks a free one)
    #[arg(long, env = "GUARDCTL_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,

    /// SQLite database; its folder also holds the admin token file `admin-token`
    #[arg(long, env = "GUARDCTL_DB", default_value = ".data/guard.db")]
    db: PathBuf,

    /// Most changes sent in one key-set sync answer
    #[arg(
        long,
        env = "GUARDCTL_SYNC_PAGE_SIZE",
        default_value_t = DEFAULT_SYNC_PAGE_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    sync_page_size: u32,
}

#[derive(Args)]
struct KeysArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Args)]
#[command(next_help_heading = "Server connection")]
struct ConnectionArgs {
    /// Base URL of `guardctl serve`
    #[arg(
        long,
        global = true,
        env = "GUARDCTL_SERVER",
        default_value = "http://127.0.0.1:8081"
    )]
    server: String,

    /// File holding the admin token (the environment variable GUARDCTL_ADMIN_TOKEN, if set,
    /// is used instead)
    #[arg(
        long,
        global = true,
        env = "GUARDCTL_ADMIN_TOKEN_FILE",
        default_value = ".data/admin-token"
    )]
    admin_token_file: PathBuf,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Issue a new API key and print its token (shown only this once)
    Create {
        /// Organisation the key belongs to ([a-z0-9][a-z0-9-]*, at most 63 characters)
        #[arg(long)]
        org: String,
        /// Role granted to the key (same form as --org)
        #[arg(long)]
        role: String,
        /// Free-text label, 1 to 128 characters
        #[arg(long)]
        name: String,
        /// Lifetime such as 90s, 15m, 12h, 30d or 2w (plain numbers are seconds); default: never expires
        #[arg(long, value_name = "DURATION", value_parser = human::parse_duration)]
        expires_in: Option<u64>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// List the live (not revoked) keys; never shows tokens or hashes
    List {
        /// Print JSON ({"keys": [...]}) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Import existing hash rows (a key store you migrate from); never plaintext tokens
    #[command(
        long_about = "Import existing hash rows from a JSON Lines file, one key per line:\n\n  \
        {\"key_id\": \"k3x9a0b1c2d3\", \"sha256\": \"<64 hex>\", \"org\": \"demo\", \"role\": \"member\", \
        \"expires_at\": 1900000000, \"name\": \"ci bot\"}\n\n\
        sha256 is the hex SHA-256 of the whole token (amt_<key-id>_<secret>); expires_at (Unix seconds) and \
        name (default \"imported\") are optional. The rules of `keys create` apply: key-id [a-z0-9]{8,32}, \
        org and role [a-z0-9][a-z0-9-]{0,62}. A plaintext token is refused.\n\n\
        The whole file is checked first; a bad line or a key-id repeated in the file stops the import before \
        anything is sent. Rows then go to the server in batches, one transaction each. A key-id the database \
        already knows (live or revoked) refuses its batch, and the error names the line and how many rows \
        before it were imported."
    )]
    Import {
        /// The JSON Lines file
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Rows per request (one transaction each on the server)
        #[arg(
            long,
            default_value_t = import::DEFAULT_BATCH_ROWS as u32,
            value_parser = clap::value_parser!(u32).range(1..=import::MAX_BATCH_ROWS as i64)
        )]
        batch_size: u32,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; proxies stop accepting it as soon as they sync
    Revoke {
        /// The key id (the part after `amt_` in the token)
        key_id: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => run_serve(args),
        Command::Keys(args) => run_keys(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("guardctl: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let config = ServeConfig {
        db_path: args.db,
        sync_page_size: usize::try_from(args.sync_page_size)?,
    };
    runtime.block_on(server::serve(&args.listen, config))
}

fn run_keys(args: KeysArgs) -> anyhow::Result<()> {
    let token = client::resolve_admin_token(&args.connection.admin_token_file)?;
    let client = AdminClient::new(&args.connection.server, token)?;
    let output = match args.action {
        KeysAction::Create {
            org,
            role,
            name,
            expires_in,
            json,
        } => {
            let created = client.create_key(&CreateKeyParams {
                org,
                role,
                name,
                expires_in_seconds: expires_in,
            })?;
            if json {
                format!("{}\n", serde_json::to_string(&created)?)
            } else {
                human::render_created(&created)
            }
        }
        KeysAction::List { json } => {
            let list = client.list_keys()?;
            if json {
                format!("{}\n", serde_json::to_string(&list)?)
            } else {
                human::render_key_table(&list.keys, unix_now())
            }
        }
        KeysAction::Import {
            file,
            batch_size,
            json,
        } => {
            let started = std::time::Instant::now();
            let summary = import::import_file(
                &file,
                usize::try_from(batch_size)?,
                unix_now(),
                |rows| client.import_batch(rows),
                |progress| {
                    if !json && progress.batches.is_multiple_of(10) {
                        eprintln!("guardctl: imported {} keys so far", progress.imported);
                    }
                },
            )?;
            if json {
                format!("{}\n", serde_json::to_string(&summary)?)
            } else {
                let version = summary
                    .version
                    .map_or_else(String::new, |v| format!(", key-set version {v}"));
                format!(
                    "Imported {} keys in {} batches ({:.1} s{version}).\n",
                    summary.imported,
                    summary.batches,
                    started.elapsed().as_secs_f64()
                )
            }
        }
        KeysAction::Revoke { key_id, json } => {
            let revoked = client.revoke_key(&key_id)?;
            if json {
                format!("{}\n", serde_json::to_string(&revoked)?)
            } else {
                format!(
                    "Revoked key {} (key-set version {}).\n",
                    revoked.key_id, revoked.version
                )
            }
        }
    };
    print_output(&output)
}

/// Writes to stdout; a closed pipe (`guardctl keys list | head`) is not an error.
fn print_output(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
