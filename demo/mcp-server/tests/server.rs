//! Integration tests: start the server on 127.0.0.1:0 and talk to it with rmcp's own
//! streamable HTTP client and with plain HTTP.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use axum::http::{HeaderName, HeaderValue};
use mcp_demo_server::{LastRequest, WhoAmI};
use rmcp::{
    model::{CallToolRequestParams, CallToolResult, ClientConfig},
    service::RunningService,
    transport::{
        streamable_http_client::StreamableHttpClientTransportConfig, StreamableHttpClientTransport,
    },
    RoleClient, ServiceExt,
};
use tokio::{sync::oneshot, task::JoinHandle};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), BoxError>;

struct TestServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    async fn start() -> Result<Self, BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(mcp_demo_server::serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            shutdown,
            handle,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Trigger graceful shutdown and require it to finish promptly.
    async fn stop(self) -> TestResult {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(10), self.handle).await???;
        Ok(())
    }

    async fn last_request(&self) -> Result<LastRequest, BoxError> {
        let body = reqwest::get(self.url("/debug/last-request"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(serde_json::from_str(&body)?)
    }
}

async fn connect(
    server: &TestServer,
    headers: &[(&'static str, &'static str)],
    bearer: Option<&str>,
) -> Result<RunningService<RoleClient, ClientConfig>, BoxError> {
    let custom_headers: HashMap<HeaderName, HeaderValue> = headers
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect();
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/api/mcp"))
        .custom_headers(custom_headers);
    if let Some(token) = bearer {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    Ok(ClientConfig::default().serve(transport).await?)
}

fn args(value: serde_json::Value) -> Result<serde_json::Map<String, serde_json::Value>, BoxError> {
    Ok(serde_json::from_value(value)?)
}

fn first_text(result: &CallToolResult) -> Option<&str> {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str())
}

#[tokio::test]
async fn rmcp_client_initialize_list_and_call_tools() -> TestResult {
    let server = TestServer::start().await?;

    let client = connect(
        &server,
        &[
            ("x-amt-key-id", "key-123"),
            ("x-amt-org", "acme"),
            ("x-amt-role", "admin"),
        ],
        Some("super-secret"),
    )
    .await?;

    let info = client
        .peer_info()
        .ok_or("no server info after initialize")?;
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("mcp-demo-server")
    );
    assert!(info.capabilities.tools.is_some());

    let mut names: Vec<String> = client
        .list_all_tools()
        .await?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "echo", "sleep", "whoami"]);

    let slept = client
        .call_tool(
            CallToolRequestParams::new("sleep")
                .with_arguments(args(serde_json::json!({"ms": 20}))?),
        )
        .await?;
    assert_eq!(first_text(&slept), Some("slept 20 ms"));

    let echo = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(serde_json::json!({"text": "hello, upstream"}))?),
        )
        .await?;
    assert_ne!(echo.is_error, Some(true));
    assert_eq!(first_text(&echo), Some("hello, upstream"));

    let add = client
        .call_tool(
            CallToolRequestParams::new("add")
                .with_arguments(args(serde_json::json!({"a": 40, "b": 2}))?),
        )
        .await?;
    assert_eq!(first_text(&add), Some("42"));

    let overflow = client
        .call_tool(
            CallToolRequestParams::new("add")
                .with_arguments(args(serde_json::json!({"a": i64::MAX, "b": 1}))?),
        )
        .await?;
    assert_eq!(overflow.is_error, Some(true));

    let whoami = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    assert_ne!(whoami.is_error, Some(true));
    // The value of the authorization header must never be reported.
    let text = first_text(&whoami).ok_or("whoami returned no text")?;
    assert!(!text.contains("super-secret"), "{text}");
    let who: WhoAmI = whoami.into_typed()?;
    assert_eq!(
        who,
        WhoAmI {
            key_id: Some("key-123".into()),
            org: Some("acme".into()),
            role: Some("admin".into()),
            authorization_present: true,
        }
    );

    // A second session without identity headers sees none.
    let anon = connect(&server, &[], None).await?;
    let who: WhoAmI = anon
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?
        .into_typed()?;
    assert_eq!(
        who,
        WhoAmI {
            key_id: None,
            org: None,
            role: None,
            authorization_present: false,
        }
    );
    anon.cancel().await?;

    // Shut the server down while `client` still has a session open (and possibly its SSE
    // GET stream): graceful shutdown must still complete.
    server.stop().await?;
    let _ = client.cancel().await;
    Ok(())
}

#[tokio::test]
async fn debug_last_request_reports_headers_of_mcp_requests() -> TestResult {
    let server = TestServer::start().await?;
    let http = reqwest::Client::new();

    let empty = server.last_request().await?;
    assert_eq!(empty.count, 0);
    assert!(empty.headers.is_empty());
    assert_eq!(empty.method, None);

    // A raw initialize POST, as a proxy would forward it.
    let resp = http
        .post(server.url("/api/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer abc")
        .header("x-amt-key-id", "k1")
        .header("x-amt-org", "org1")
        .header("x-amt-role", "reader")
        .body(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"0"}}}"#,
        )
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert!(resp.headers().contains_key("mcp-session-id"));
    let body = resp.text().await?;
    assert!(body.contains(r#""serverInfo""#), "{body}");

    let last = server.last_request().await?;
    assert_eq!(last.count, 1);
    assert_eq!(last.method.as_deref(), Some("POST"));
    assert_eq!(last.uri.as_deref(), Some("/api/mcp"));
    let h = |name: &str| last.headers.get(name).map(String::as_str);
    assert_eq!(h("authorization"), Some("Bearer abc"));
    assert_eq!(h("x-amt-key-id"), Some("k1"));
    assert_eq!(h("x-amt-org"), Some("org1"));
    assert_eq!(h("x-amt-role"), Some("reader"));
    assert_eq!(h("accept"), Some("application/json, text/event-stream"));

    // Neither the debug endpoint itself nor other paths count.
    let _ = server.last_request().await?;
    let other = http.post(server.url("/api/other")).send().await?;
    assert_eq!(other.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(server.last_request().await?.count, 1);

    // A request that rmcp rejects (no session) still reached the upstream and is recorded.
    let rejected = http
        .post(server.url("/api/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await?;
    assert_eq!(rejected.status(), reqwest::StatusCode::BAD_REQUEST);
    let last = server.last_request().await?;
    assert_eq!(last.count, 2);
    assert!(!last.headers.contains_key("authorization"));
    assert!(!last.headers.contains_key("x-amt-key-id"));

    server.stop().await
}

/// Every "never reached the upstream" assertion of the end-to-end suite rests on this: a request
/// counts the moment its head arrives, even if its body never does.
#[tokio::test]
async fn a_request_counts_as_soon_as_its_headers_arrive() -> TestResult {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start().await?;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await?;
    stream
        .write_all(
            b"POST /api/mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
              accept: application/json, text/event-stream\r\ncontent-length: 1000\r\n\r\n{\"jsonrpc\"",
        )
        .await?;
    let started = std::time::Instant::now();
    loop {
        let last = server.last_request().await?;
        if last.count == 1 {
            assert_eq!(last.method.as_deref(), Some("POST"));
            assert_eq!(last.body, None, "the body has not arrived");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "headers without their body were not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    server.stop().await
}
