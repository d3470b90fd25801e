//! Demo MCP server: the upstream behind the mcp-guard Envoy filter in the demo stack and the
//! end-to-end tests.
//!
//! * `POST/GET/DELETE /api/mcp` — MCP over rmcp's streamable HTTP transport (stateful sessions,
//!   the `Mcp-Session-Id` header is issued on `initialize`).
//! * `GET /debug/last-request` — JSON of the most recent request that reached `/api/mcp`, with
//!   its headers exactly as received (this is a test upstream, echoing them is the point).
//!
//! Tools: `echo`, `add`, `whoami` (reports the identity headers the proxy set).

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    extract::{Request, State},
    http::{request::Parts, HeaderMap},
    middleware::{self, Next},
    response::Response,
    routing::get,
    Json, Router,
};
use rmcp::{
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{Implementation, ServerCapabilities, ServerConfig},
    schemars,
    service::{RequestContext, RoleServer},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    },
    ServerHandler,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Path the MCP endpoint is served on (the proxy forwards `/api/mcp` unchanged).
pub const MCP_PATH: &str = "/api/mcp";
/// The same tools without sessions, each answer one `application/json` body sent when the call
/// completes (so a slow call sends no response headers until it is done).
pub const MCP_JSON_PATH: &str = "/api/mcp-json";
/// Path of the debug endpoint reporting the last request seen on [`MCP_PATH`].
pub const DEBUG_LAST_REQUEST_PATH: &str = "/debug/last-request";

/// Identity headers the proxy sets on authenticated requests.
pub const HEADER_KEY_ID: &str = "x-amt-key-id";
pub const HEADER_ORG: &str = "x-amt-org";
pub const HEADER_ROLE: &str = "x-amt-role";

/// Server options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `Host` header allow-list (rmcp's DNS-rebinding protection).
    /// `None` keeps rmcp's default (`localhost`, `127.0.0.1`, `::1`, any port);
    /// `Some(vec![])` accepts any `Host`.
    pub allowed_hosts: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// Text to echo back.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend.
    pub a: i64,
    /// Second addend.
    pub b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to wait before answering, in milliseconds (at most 60000).
    pub ms: u64,
}

/// Longest `sleep` the demo server agrees to.
const MAX_SLEEP_MS: u64 = 60_000;

/// Result of the `whoami` tool: the identity headers that reached this upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {
    /// Value of `x-amt-key-id`, if present.
    pub key_id: Option<String>,
    /// Value of `x-amt-org`, if present.
    pub org: Option<String>,
    /// Value of `x-amt-role`, if present.
    pub role: Option<String>,
    /// Whether an `authorization` header reached the upstream (its value is never reported).
    pub authorization_present: bool,
}

impl WhoAmI {
    fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        Self {
            key_id: get(HEADER_KEY_ID),
            org: get(HEADER_ORG),
            role: get(HEADER_ROLE),
            authorization_present: headers.contains_key(axum::http::header::AUTHORIZATION),
        }
    }
}

/// The MCP server handler (one instance per session).
#[derive(Debug, Clone)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoServer {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Return the given text unchanged")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two integers and return the sum")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<String, String> {
        a.checked_add(b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| "integer overflow".to_owned())
    }

    #[tool(
        description = "Wait the given milliseconds, then answer: a long-running call, for trying \
                       what a proxy does with a stream that stays open"
    )]
    async fn sleep(&self, Parameters(SleepArgs { ms }): Parameters<SleepArgs>) -> String {
        let ms = ms.min(MAX_SLEEP_MS);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        format!("slept {ms} ms")
    }

    #[tool(
        description = "Report the identity headers (x-amt-key-id, x-amt-org, x-amt-role) that \
                       reached this upstream, and whether an authorization header was present"
    )]
    fn whoami(&self, ctx: RequestContext<RoleServer>) -> rmcp::Json<WhoAmI> {
        // rmcp's streamable HTTP server injects the request's `http::request::Parts` (headers
        // included) into the request context extensions. Absent on other transports.
        let who = match ctx.extensions.get::<Parts>() {
            Some(parts) => WhoAmI::from_headers(&parts.headers),
            None => WhoAmI::from_headers(&HeaderMap::new()),
        };
        rmcp::Json(who)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Demo MCP server: tools echo, add, whoami, sleep.")
    }
}

// ---------------------------------------------------------------------------------------------
// Debug endpoint
// ---------------------------------------------------------------------------------------------

/// What `GET /debug/last-request` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRequest {
    /// Number of requests seen on [`MCP_PATH`] since start.
    pub count: u64,
    /// Method of the most recent request (`null` before the first).
    pub method: Option<String>,
    /// Path and query of the most recent request (`null` before the first).
    pub uri: Option<String>,
    /// Headers of the most recent request, names lower-case, values as received
    /// (repeated headers joined with `", "`).
    pub headers: BTreeMap<String, String>,
    /// Body of the most recent request, as received (lossy UTF-8), so tests can check that a
    /// proxy forwarded it byte for byte. Bodies over 1 MiB are not recorded.
    #[serde(default)]
    pub body: Option<String>,
}

/// Bodies larger than this are forwarded but not recorded.
const RECORDED_BODY_LIMIT: usize = 1 << 20;

type SharedLastRequest = Arc<Mutex<LastRequest>>;

async fn record_request(
    State(last): State<SharedLastRequest>,
    request: Request,
    next: Next,
) -> Response {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    use axum::response::IntoResponse;
    // Count the request as soon as its head arrives, before reading the body: a test that
    // asserts "nothing reached the upstream" must see even a request whose body never came.
    {
        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
        last.count += 1;
        last.method = Some(request.method().as_str().to_owned());
        last.uri = Some(request.uri().to_string());
        last.headers = headers;
        last.body = None;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, RECORDED_BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "body too large for the demo server",
            )
                .into_response()
        }
    };
    last.lock().unwrap_or_else(PoisonError::into_inner).body =
        Some(String::from_utf8_lossy(&bytes).into_owned());
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

async fn last_request(State(last): State<SharedLastRequest>) -> Json<LastRequest> {
    Json(last.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Build the axum app. Cancelling `ct` terminates all MCP sessions (and their SSE streams).
pub fn app(options: &Options, ct: CancellationToken) -> Router {
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(ct);
    if let Some(hosts) = &options.allowed_hosts {
        config = config.with_allowed_hosts(hosts.iter().cloned());
    }
    let mut json_config = config.clone().with_json_response(true);
    json_config.legacy_session_mode = false;
    let mcp: StreamableHttpService<DemoServer, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(DemoServer::new()), Default::default(), config);
    let mcp_json: StreamableHttpService<DemoServer, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(DemoServer::new()), Default::default(), json_config);

    let last: SharedLastRequest = Arc::default();
    Router::new()
        .route_service(MCP_PATH, mcp)
        .route_service(MCP_JSON_PATH, mcp_json)
        // route_layer: only requests that matched /api/mcp are recorded.
        .route_layer(middleware::from_fn_with_state(last.clone(), record_request))
        .route(DEBUG_LAST_REQUEST_PATH, get(last_request))
        .with_state(last)
}

/// Serve on `listener` with default [`Options`] until `shutdown` resolves, then shut down
/// gracefully (MCP sessions are terminated, in-flight requests are finished).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, Options::default(), shutdown).await
}

/// Like [`serve`], with explicit [`Options`].
pub async fn serve_with(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let ct = CancellationToken::new();
    let router = app(&options, ct.child_token());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // End open SSE streams, otherwise graceful shutdown would wait on them forever.
            ct.cancel();
        })
        .await
}
