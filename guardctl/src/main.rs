//! The `guardctl` command line: `serve` runs the control plane; `keys ...`, `users ...` and
//! `audit ...` talk to it.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use guardctl::api::{self, ServeConfig, DEFAULT_SYNC_PAGE_SIZE};
use guardctl::cli::client::{self, AdminClient, CreateKeyParams};
use guardctl::cli::human;
use guardctl::keys::import;
use guardctl::policy;
use guardctl::telemetry::logging::{self, LogFormat};
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// `guardctl --help`, laid out like kubectl's: what it is, commands by group, examples, usage.
/// (clap cannot group subcommands; `tests::root_help_lists_every_command` keeps this list true.)
const ROOT_HELP: &str = "\
{about-with-newline}
Server Commands:
  serve          Run the control plane: admin API, key-set sync API, /healthz, /readyz, /metrics

Key Commands (through a running server, with the admin token):
  keys create    Issue a new API key and print its token (shown only this once)
  keys list      List the live keys (never tokens or hashes)
  keys revoke    Revoke a key; answers once every live proxy refuses it (or says which do not)
  keys import    Import existing hash rows (SHA-256 of each token) from a JSON Lines file

User Commands (through a running server, with the admin token):
  users add      Add a user to an org with a role; the user's keys are frozen to that role
  users set-role Change a user's role (keys already issued keep the role they were created with)
  users list     List the users, their roles and how many live keys each has
  users remove   Remove a user (refused while it has live keys, unless --revoke-keys)
  audit list     Show the audit trail of admin actions (never a token or hash)

Policy Commands (through a running server, with the admin token):
  policy set     Set an org's tool policy from a YAML or JSON file (mistakes name their line)
  policy show    Show an org's policy as it was set, and its version
  policy check   Say whether a role may call a tool, and by which rule (exit 3: it may not)
  policy remove  Remove an org's policy (every role may call every tool again)

Database Commands:
  db migrate     Create or upgrade the schema (serve does it at start too); safe from several replicas
  db copy        Copy a SQLite installation into a new PostgreSQL database (new epoch)

Other Commands:
  help           Print this message or the help of the given command

Examples:
  # Start the server; on first start it writes an admin token next to the database
  guardctl serve --listen 0.0.0.0:8081 --db /var/lib/guardctl/guard.db

  # The same, configured by environment, with JSON logs for a log collector
  GUARDCTL_LISTEN=0.0.0.0:8081 GUARDCTL_DB=/var/lib/guardctl/guard.db GUARDCTL_LOG_FORMAT=json guardctl serve

  # Add a user, then issue a key in their name (it carries their role, frozen), valid 90 days
  guardctl users add alice --org acme --role viewer
  guardctl keys create --user alice --name \"alice's agent\" --expires-in 90d --json

  # A service key, not tied to a user: org and role given directly
  guardctl keys create --org acme --role member --name \"ci bot\"

  # List the keys, then revoke one
  guardctl keys list
  guardctl keys revoke k3x9a0b1c2d3

  # Talk to a server elsewhere
  GUARDCTL_SERVER=http://guardctl.mcp-guard:8081 GUARDCTL_ADMIN_TOKEN_FILE=./admin-token guardctl keys list

Usage:
  guardctl <command> [options]

Options:
{options}

Use \"guardctl <command> --help\" for more information about a command.
";

const SERVE_EXAMPLES: &str = "\
Examples:
  # Local: database and admin token in ./.data, on 127.0.0.1:8081
  guardctl serve

  # In a container: every flag by environment, JSON logs, the admin token from a mounted Secret
  GUARDCTL_LISTEN=0.0.0.0:8081 \\
  GUARDCTL_DB=/var/lib/guardctl/guard.db \\
  GUARDCTL_ADMIN_TOKEN_FILE=/run/secrets/guardctl/admin-token \\
  GUARDCTL_LOG_FORMAT=json guardctl serve

  # Log every sync request too
  guardctl serve --log-level debug

Endpoints: /v1/keys (admin API, admin token), /v1/keyset (sync API), /healthz (liveness),
/readyz (readiness: the database answers and the server is not stopping), /metrics (Prometheus).
SIGTERM or SIGINT: /readyz turns 503, waiting long-polls are answered at once, then it exits 0.";

const KEYS_EXAMPLES: &str = "\
Examples:
  # Issue a key; the token is printed once and never stored
  guardctl keys create --org acme --role member --name \"ci bot\" --expires-in 90d

  # List the live keys as JSON
  guardctl keys list --json

  # Revoke a key by its id (the part after amt_ in the token)
  guardctl keys revoke k3x9a0b1c2d3

  # Move an existing key store in (hash rows, never tokens)
  guardctl keys import --file rows.jsonl

Use \"guardctl keys <command> --help\" for more information about a command.";

#[derive(Parser)]
#[command(
    name = "guardctl",
    version,
    about = "guardctl controls mcp-guard's API keys and tool policies: it issues keys, keeps their \
        SHA-256 hashes and each org's policy in SQLite and serves them to every mcp-guard proxy.\n\n\
        Find more information at: docs/guardctl.md and docs/protocol.md",
    help_template = ROOT_HELP,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: admin API, key-set sync API, /healthz, /readyz, /metrics
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Create, list, revoke and import API keys through a running server
    #[command(after_help = KEYS_EXAMPLES)]
    Keys(KeysArgs),
    /// Add, list, change and remove the users who issue keys
    Users(UsersArgs),
    /// Read the audit trail of admin actions
    Audit(AuditArgs),
    /// Set, show, check and remove an org's tool policy (which tools each role may call)
    Policy(PolicyArgs),
    /// The database itself: apply its schema migrations
    Db(DbArgs),
}

#[derive(Args)]
struct DbArgs {
    #[command(subcommand)]
    action: DbAction,
}

#[derive(Subcommand)]
enum DbAction {
    /// Create or upgrade the schema (as `serve` does at start), then print where the database
    /// is; safe to run from several replicas at once
    Migrate {
        /// SQLite database file, or a postgres:// URL
        #[arg(long, env = "GUARDCTL_DB", default_value = ".data/guard.db")]
        db: PathBuf,
    },
    /// Copy a SQLite installation (keys' hash rows, users, policies, audit trail) into a new
    /// PostgreSQL database, with a new epoch; stop the server on the SQLite file first, and
    /// start the replicas on the database after
    Copy {
        /// The SQLite database file to copy (it is only read)
        #[arg(long, value_name = "SQLITE_PATH")]
        from: PathBuf,
        /// The PostgreSQL database to copy into: postgres://... (it must be empty)
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Args)]
struct PolicyArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    action: PolicyAction,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Set the org's policy from a YAML or JSON file (validated; mistakes name their line)
    Set {
        #[arg(long)]
        org: String,
        /// The policy document ("-" reads standard input)
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Accept roles that no user or key of the org holds yet
        #[arg(long)]
        allow_unknown_roles: bool,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show the org's policy as it was set, and its version
    Show {
        #[arg(long)]
        org: String,
        /// Print JSON (source and canonical policy) instead of the source
        #[arg(long)]
        json: bool,
    },
    /// Say whether a role may call a tool (or use a method), and by which rule; exits 3 when
    /// it may not
    Check {
        #[arg(long)]
        org: String,
        #[arg(long)]
        role: String,
        /// The tool of a tools/call
        #[arg(long, required_unless_present = "method")]
        tool: Option<String>,
        /// An MCP method other than tools/call (resources/read, prompts/get, ...)
        #[arg(long, conflicts_with = "tool")]
        method: Option<String>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Remove the org's policy: every role may call every tool again
    Remove {
        #[arg(long)]
        org: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct UsersArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    action: UsersAction,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Add a user to an org with a role; the user's keys are frozen to that role
    Add {
        /// User name, unique within the org: 1 to 64 of a-z, 0-9, '.', '_', '@', '-'
        name: String,
        /// The user's org
        #[arg(long)]
        org: String,
        /// The role the user's keys will carry
        #[arg(long)]
        role: String,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role; keys already issued keep the role they were created with
    SetRole {
        name: String,
        role: String,
        /// The user's org (needed only when the name exists in several orgs)
        #[arg(long)]
        org: Option<String>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// List the users
    List {
        /// Print JSON ({"users": [...]}) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Remove a user; refused while the user has live keys, unless --revoke-keys
    Remove {
        name: String,
        /// The user's org (needed only when the name exists in several orgs)
        #[arg(long)]
        org: Option<String>,
        /// Revoke the user's live keys in the same transaction
        #[arg(long)]
        revoke_keys: bool,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct AuditArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Show admin actions, oldest first
    List {
        /// From this time on: Unix seconds (1700000000) or an age (90m, 24h, 7d)
        #[arg(long, value_name = "T", value_parser = parse_since)]
        since: Option<Since>,
        /// Print JSON ({"events": [...]}) instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Since {
    At(i64),
    Ago(u64),
}

/// `--since`: digits alone are Unix seconds; digits with a unit are an age.
fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map(Since::At)
            .map_err(|_| format!("{text}: too large for Unix seconds"));
    }
    human::parse_duration(text).map(Since::Ago)
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (host:port; port 0 picks a free one)
    #[arg(long, env = "GUARDCTL_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,

    /// SQLite database file (created if missing), or a postgres:// URL (any number of replicas)
    #[arg(long, env = "GUARDCTL_DB", default_value = ".data/guard.db")]
    db: PathBuf,

    /// How long a revoke waits for every live proxy to confirm it before answering (its answer
    /// says which did); 0 answers at commit
    #[arg(
        long,
        env = "GUARDCTL_CONFIRM_TIMEOUT_MS",
        default_value_t = 3000,
        value_name = "MS"
    )]
    confirm_timeout_ms: u64,

    /// Admin token file, read at start and created (mode 0600, random token) if missing
    /// [default: admin-token in the folder of --db]
    #[arg(long, env = "GUARDCTL_ADMIN_TOKEN_FILE", value_name = "PATH")]
    admin_token_file: Option<PathBuf>,

    /// Most changes sent in one key-set sync answer
    #[arg(
        long,
        env = "GUARDCTL_SYNC_PAGE_SIZE",
        default_value_t = DEFAULT_SYNC_PAGE_SIZE,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    sync_page_size: u32,

    /// Log lines as text (for people) or JSON objects (for log collectors), on stderr
    #[arg(
        long,
        env = "GUARDCTL_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        help_heading = "Logging"
    )]
    log_format: LogFormat,

    /// Which events to log, in RUST_LOG form: error, warn, info, debug (adds every sync
    /// request), or per module such as guardctl=debug,warn
    #[arg(
        long,
        env = "GUARDCTL_LOG",
        default_value = logging::DEFAULT_LEVEL,
        value_name = "FILTER",
        help_heading = "Logging"
    )]
    log_level: String,
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

impl ConnectionArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let token = client::resolve_admin_token(&self.admin_token_file)?;
        AdminClient::new(&self.server, token)
    }
}

#[derive(Subcommand)]
enum KeysAction {
    /// Issue a new API key and print its token (shown only this once)
    #[command(
        long_about = "Issue a new API key and print its token (shown only this once).\n\n\
        With --user, the key acts for that user: it gets the user's org and the user's role as it \
        is now, frozen (a later `users set-role` changes no existing key). Without --user it is a \
        service key: give --org and --role."
    )]
    Create {
        /// The issuing user: the key takes the user's org and current role
        #[arg(long, conflicts_with = "role")]
        user: Option<String>,
        /// Organisation ([a-z0-9][a-z0-9-]*, at most 63 characters); with --user, needed only
        /// when the name exists in several orgs
        #[arg(long, required_unless_present = "user")]
        org: Option<String>,
        /// A service key's role (same form as --org)
        #[arg(long, required_unless_present = "user")]
        role: Option<String>,
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
    /// Revoke a key; answers once every live proxy refuses it (or says which do not)
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
        Command::Serve(args) => return run_serve(args),
        Command::Keys(args) => run_keys(args),
        Command::Users(args) => run_users(args),
        Command::Audit(args) => run_audit(args),
        Command::Db(DbArgs {
            action: DbAction::Migrate { db },
        }) => run_migrate(&db),
        Command::Db(DbArgs {
            action: DbAction::Copy { from, to },
        }) => run_copy(&from, &to),
        Command::Policy(args) => match run_policy(args) {
            Ok(Checked::Denied) => return ExitCode::from(CHECK_DENIED),
            other => other.map(|_| ()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("guardctl: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_serve(args: ServeArgs) -> ExitCode {
    if let Err(err) = logging::init(args.log_format, &args.log_level) {
        eprintln!("guardctl: error: {err:#}");
        return ExitCode::FAILURE;
    }
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| {
            let config = ServeConfig {
                db_path: args.db,
                sync_page_size: usize::try_from(args.sync_page_size)?,
                admin_token_file: args.admin_token_file,
                confirm_timeout: std::time::Duration::from_millis(args.confirm_timeout_ms),
            };
            runtime.block_on(api::serve(&args.listen, config))
        });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_keys(args: KeysArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    let output = match args.action {
        KeysAction::Create {
            user,
            org,
            role,
            name,
            expires_in,
            json,
        } => {
            let org = match &user {
                Some(user) => client.org_of_user(user, org)?,
                None => org.unwrap_or_default(),
            };
            let created = client.create_key(&CreateKeyParams {
                org,
                role,
                user,
                name,
                expires_in_seconds: expires_in,
            })?;
            if json {
                json_line(&created)?
            } else {
                human::render_created(&created)
            }
        }
        KeysAction::List { json } => {
            let list = client.list_keys()?;
            if json {
                json_line(&list)?
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
                json_line(&summary)?
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
                json_line(&revoked)?
            } else {
                let enforced = match &revoked.enforced {
                    None => String::new(),
                    Some(e) if e.unconfirmed.is_empty() => format!(
                        " Enforced by all {} live proxies ({} ms).",
                        e.confirmed.len(),
                        e.waited_ms
                    ),
                    Some(e) => format!(
                        " Enforced by {} live proxies; not confirmed after {} ms by: {} (they \
                         apply it when they reach guardctl again, or fail closed by \
                         max_staleness_ms).",
                        e.confirmed.len(),
                        e.waited_ms,
                        e.unconfirmed.join(", ")
                    ),
                };
                format!(
                    "Revoked key {} (key-set version {}).{enforced}\n",
                    revoked.key_id, revoked.version
                )
            }
        }
    };
    print_output(&output)
}

fn run_users(args: UsersArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    let output = match args.action {
        UsersAction::Add {
            name,
            org,
            role,
            json,
        } => {
            let user = client.add_user(&org, &name, &role)?;
            if json {
                json_line(&user)?
            } else {
                format!(
                    "Added user {} to org {} with role {}.\n",
                    user.name, user.org, user.role
                )
            }
        }
        UsersAction::SetRole {
            name,
            role,
            org,
            json,
        } => {
            let org = client.org_of_user(&name, org)?;
            let change = client.set_user_role(&org, &name, &role)?;
            if json {
                json_line(&change)?
            } else {
                format!(
                    "User {} in org {}: role {} -> {}. Keys already issued keep the role they \
                     were created with.\n",
                    change.name, change.org, change.from, change.to
                )
            }
        }
        UsersAction::List { json } => {
            let list = client.list_users()?;
            if json {
                json_line(&list)?
            } else {
                human::render_user_table(&list.users)
            }
        }
        UsersAction::Remove {
            name,
            org,
            revoke_keys,
            json,
        } => {
            let org = client.org_of_user(&name, org)?;
            let removed = client.remove_user(&org, &name, revoke_keys)?;
            if json {
                json_line(&removed)?
            } else {
                let keys: Vec<&str> = removed.revoked.iter().map(|k| k.key_id.as_str()).collect();
                let revoked = if keys.is_empty() {
                    String::new()
                } else {
                    format!(" Revoked its keys: {}.", keys.join(", "))
                };
                format!(
                    "Removed user {} from org {}.{revoked}\n",
                    removed.name, removed.org
                )
            }
        }
    };
    print_output(&output)
}

fn run_migrate(db: &std::path::Path) -> anyhow::Result<()> {
    let store = guardctl::store::open(db)
        .with_context(|| format!("cannot open database {}", db.display()))?;
    print_output(&format!(
        "Database {} is at the current schema: epoch {}, key-set version {}.\n",
        store.location(),
        store.epoch(),
        store.current_version()?
    ))
}

fn run_copy(from: &std::path::Path, to: &str) -> anyhow::Result<()> {
    use guardctl::store::copy::Installation;
    use guardctl::store::{is_postgres_url, Actor, KeyStore, PgStore, SqliteStore};
    anyhow::ensure!(
        is_postgres_url(to),
        "--to must be a postgres:// or postgresql:// URL"
    );
    // Opening a missing SQLite path would create an empty database and copy nothing.
    anyhow::ensure!(
        from.is_file(),
        "--from {}: no such SQLite database file",
        from.display()
    );
    let source = SqliteStore::open(from)
        .with_context(|| format!("cannot open database {}", from.display()))?;
    let installation = Installation::read(&source)?;
    let destination = PgStore::open(to).context("cannot open the PostgreSQL database")?;
    let summary = installation.summary(&from.display().to_string());
    let actor = Actor {
        name: "admin",
        at: unix_now(),
    };
    let restored = destination.restore(&installation, &summary, &actor)?;
    print_output(&format!(
        "Copied {} keys, {} users, {} policies and {} audit rows from {} into {}: key-set \
         version {}, new epoch {} (proxies reload the whole set once).\n",
        installation.keys.len(),
        installation.users.len(),
        installation.policies.len(),
        installation.audit.len(),
        from.display(),
        destination.location(),
        restored.version,
        restored.epoch,
    ))
}

/// `policy check`'s exit status when the call is not allowed.
const CHECK_DENIED: u8 = 3;

/// What a policy command found; only `check` can deny.
enum Checked {
    Done,
    Denied,
}

fn run_policy(args: PolicyArgs) -> anyhow::Result<Checked> {
    let client = args.connection.client()?;
    let (output, checked) = match args.action {
        PolicyAction::Set {
            org,
            file,
            allow_unknown_roles,
            json,
        } => {
            let source = if file.as_os_str() == "-" {
                io::read_to_string(io::stdin()).context("cannot read standard input")?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let set = client
                .set_policy(&org, &source, allow_unknown_roles)
                .with_context(|| format!("{} refused", file.display()))?;
            let output = if json {
                json_line(&set)?
            } else {
                format!(
                    "Set the policy of org {} at version {} ({}). Proxies apply it to every \
                     request not yet forwarded.\n",
                    set.org, set.version, set.summary
                )
            };
            (output, Checked::Done)
        }
        PolicyAction::Show { org, json } => {
            let output = match client.policy(&org)? {
                Some(view) if json => json_line(&view)?,
                Some(view) => format!(
                    "# org {} policy, version {}, set {} ({})\n{}{}",
                    view.org,
                    view.version,
                    human::format_unix_utc(view.set_at),
                    view.summary,
                    view.source,
                    if view.source.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    }
                ),
                None if json => json_line(&serde_json::json!({ "org": org, "policy": null }))?,
                None => format!("Org {org} has no policy: every role may call every tool.\n"),
            };
            (output, Checked::Done)
        }
        PolicyAction::Check {
            org,
            role,
            tool,
            method,
            json,
        } => {
            let verdict =
                policy::check::explain(client.policy(&org)?.as_ref(), &role, tool, method)?;
            let output = if json {
                json_line(&verdict)?
            } else {
                format!("{}\n", verdict.explanation)
            };
            let checked = if verdict.allowed {
                Checked::Done
            } else {
                Checked::Denied
            };
            (output, checked)
        }
        PolicyAction::Remove { org, json } => {
            let removed = client.remove_policy(&org)?;
            let output = if json {
                json_line(&removed)?
            } else {
                format!(
                    "Removed the policy of org {} at version {}: every role may call every tool.\n",
                    removed.org, removed.version
                )
            };
            (output, Checked::Done)
        }
    };
    print_output(&output)?;
    Ok(checked)
}

fn run_audit(args: AuditArgs) -> anyhow::Result<()> {
    let client = args.connection.client()?;
    let output = match args.action {
        AuditAction::List { since, json } => {
            let since = match since {
                None => 0,
                Some(Since::At(at)) => at,
                Some(Since::Ago(age)) => {
                    unix_now().saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
                }
            };
            let list = client.audit(since)?;
            if json {
                json_line(&list)?
            } else {
                human::render_audit_table(&list.events)
            }
        }
    };
    print_output(&output)
}

/// One JSON object and a newline, what every `--json` prints.
fn json_line(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string(value)?))
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The hand-written command groups of `guardctl --help` name every real command.
    #[test]
    fn root_help_lists_every_command() {
        let root = Cli::command();
        for command in root.get_subcommands() {
            let name = command.get_name();
            assert!(ROOT_HELP.contains(&format!("\n  {name} ")), "{name}");
            for action in command.get_subcommands() {
                let full = format!("\n  {name} {}", action.get_name());
                assert!(ROOT_HELP.contains(&full), "{full}");
            }
        }
        let listed = ROOT_HELP
            .lines()
            .skip_while(|line| !line.ends_with("Commands:"))
            .take_while(|line| !line.starts_with("Examples:"))
            .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| *name != "help")
            .collect::<Vec<_>>();
        for name in listed {
            assert!(
                root.find_subcommand(name).is_some(),
                "{name} is not a command"
            );
        }
    }

    /// The synopsis at the top of docs/guardctl.md parses, with and without its optional parts.
    #[test]
    fn the_documented_synopsis_parses() {
        const DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/guardctl.md"));
        let block = DOC
            .split("```sh\n")
            .nth(1)
            .unwrap()
            .split("```")
            .next()
            .unwrap();
        let mut commands = Vec::new();
        for line in block.lines() {
            let line = line.split(" # ").next().unwrap().trim();
            match commands.last_mut() {
                Some(last) if !line.starts_with("guardctl ") => *last = format!("{last} {line}"),
                _ => commands.push(line.to_string()),
            }
        }
        assert!(commands.len() >= 10, "{commands:?}");
        for command in &commands {
            let mandatory = command
                .split('[')
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part
                    } else {
                        part.split_once(']').map_or("", |(_, rest)| rest)
                    }
                })
                .collect::<String>();
            let full = command.replace(['[', ']'], "");
            for form in [mandatory, full] {
                let words: Vec<&str> = form
                    .split_whitespace()
                    .map(|word| word.split('|').next().unwrap_or(word))
                    .collect();
                if let Err(err) = Cli::try_parse_from(&words) {
                    panic!("{form}: {err}");
                }
            }
        }
    }

    #[test]
    fn serve_flags_have_environment_variables() {
        let root = Cli::command();
        let serve = root.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            assert!(
                env.as_deref()
                    .is_some_and(|env| env.starts_with("GUARDCTL_")),
                "--{} has no GUARDCTL_* variable",
                arg.get_id()
            );
        }
    }

    #[test]
    fn serve_flags_parse_from_the_environment_names() {
        let cli = Cli::try_parse_from([
            "guardctl",
            "serve",
            "--log-format",
            "json",
            "--log-level",
            "guardctl=debug",
            "--admin-token-file",
            "/run/secrets/admin-token",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.log_level, "guardctl=debug");
        assert_eq!(
            args.admin_token_file,
            Some(PathBuf::from("/run/secrets/admin-token"))
        );
        assert!(Cli::try_parse_from(["guardctl", "serve", "--log-format", "xml"]).is_err());
    }
}
