//! Table-driven tests of the whole inspector, covering THREATS.md "The body" and "Secret names".
//! Every case is also replayed through [`BodyBuffer`] in 1..=7-byte chunks.

use super::body::replay_chunked;
use super::inspect::*;
use super::names::{split_words, NamePolicy, DEFAULT_ALLOW, DEFAULT_DENY};
use super::reference::reference_denies;

/// A syntactically valid token of our grammar.
macro_rules! tok {
    () => {
        "amt_k3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8"
    };
}

/// A `tools/call` of tool `deploy` with id 7 and the given arguments JSON.
macro_rules! call {
    ($args:expr) => {
        concat!(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":"#,
            $args,
            "}}"
        )
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    /// JSON-RPC code, rule, path (`None`: not checked).
    Reject(i32, &'static str, Option<&'static str>),
}

use Expect::{Allow, Reject};

struct Case {
    name: &'static str,
    body: &'static [u8],
    method_hdr: &'static [&'static str],
    name_hdr: &'static [&'static str],
    expect: Expect,
}

const fn case(name: &'static str, body: &'static str, expect: Expect) -> Case {
    Case {
        name,
        body: body.as_bytes(),
        method_hdr: &[],
        name_hdr: &[],
        expect,
    }
}

const fn bytes(name: &'static str, body: &'static [u8], expect: Expect) -> Case {
    Case {
        name,
        body,
        method_hdr: &[],
        name_hdr: &[],
        expect,
    }
}

const fn hdr(
    name: &'static str,
    body: &'static str,
    method_hdr: &'static [&'static str],
    name_hdr: &'static [&'static str],
    expect: Expect,
) -> Case {
    Case {
        name,
        body: body.as_bytes(),
        method_hdr,
        name_hdr,
        expect,
    }
}

const P: i32 = PARSE_ERROR;
const R: i32 = INVALID_REQUEST;
const S: i32 = INVALID_PARAMS;
const H: i32 = HEADER_MISMATCH;

static CASES: &[Case] = &[
    // ---- Benign traffic ----
    case("clean call", call!(r#"{"query":"hello","limit":10}"#), Allow),
    case("call without arguments", r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"ping"}}"#, Allow),
    case("call with _meta progressToken", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"progressToken":"abc"}}}"#, Allow),
    case("initialize", r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#, Allow),
    case("notification", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, Allow),
    case("tools/list", r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"abc"}}"#, Allow),
    case("response with result", r#"{"jsonrpc":"2.0","id":5,"result":{"action":"accept","content":{"x":1}}}"#, Allow),
    case("response with error", r#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"m"}}"#, Allow),
    case("batch of good messages", concat!("[", call!(r#"{"a":1}"#), ",", r#"{"jsonrpc":"2.0","method":"notifications/x"}"#, "]"), Allow),
    case("whitespace around", concat!(" \r\n\t", call!(r#"{ "a" : [ 1 , 2 ] }"#), "\n "), Allow),
    case("secret-like words in values are fine", call!(r#"{"text":"my password is in the vault; use token auth","q":"api_key"}"#), Allow),
    case("short amt-looking values", call!(r#"{"a":"amt_","b":"amt_short_x","c":"AMT_K3X9A0B1_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"}"#), Allow),
    case("text that starts like JSON", call!(r#"{"log":"[WARN] disk full","note":"{not json at all","q":"\"quoted\" text"}"#), Allow),
    case("benign JSON in a string", call!(r#"{"payload":"{\"page_token\":\"x\",\"items\":[{\"name\":\"a\"}]}"}"#), Allow),
    case("unicode keys and values", call!(r#"{"café":"naïve ☕","中文":"\u4e2d"}"#), Allow),
    case("same key in sibling objects", call!(r#"{"a":{"id":1},"b":{"id":2},"c":[{"id":1},{"id":2}]}"#), Allow),
    case("numbers at the edge", call!(r#"{"a":9.99e307,"b":-0,"c":1e-400,"d":123456789012345678901234567890}"#), Allow),
    case("value chars fine in values", call!(r#"{"a":"\u0000\u200b\ufeff\u202e"}"#), Allow),
    // ---- Category containers are judged by what they hold ----
    case("auth container of ids", call!(r#"{"auth":{"user_id":"u1","mechanism":"SCRAM-SHA-256"},"credentials":[{"username":"bob"}]}"#), Allow),
    case("auth container holding a password", call!(r#"{"auth":{"user":"u1","password":"x"}}"#), Reject(S, "password", Some("arguments.auth.password"))),
    case("auth as a string is a secret", call!(r#"{"auth":"Basic dXNlcjpwYXNz"}"#), Reject(S, "auth", Some("arguments.auth"))),
    case("credentials container holding a token", call!(r#"{"credentials":{"access_token":"x"}}"#), Reject(S, "access_token", Some("arguments.credentials.access_token"))),
    // ---- Name/value lists: a secret's name as the label makes its `value` a secret ----
    case("name/value header list", call!(r#"{"headers":[{"name":"Accept","value":"json"},{"name":"X-Api-Key","value":"k"}]}"#), Reject(S, "api_key", Some("arguments.headers[1].value"))),
    case("key/value settings", call!(r#"{"settings":[{"key":"db_password","value":"x"}]}"#), Reject(S, "password", Some("arguments.settings[0].value"))),
    case("AWS-style Name/Value", call!(r#"{"Environment":[{"Name":"GITHUB_TOKEN","Value":"x"}]}"#), Reject(S, "token", Some("arguments.Environment[0].Value"))),
    case("env list in JSON in a string", call!(r#"{"spec":"{\"env\":[{\"name\":\"CLIENT_SECRET\",\"value\":\"x\"}]}"}"#), Reject(S, "client_secret", Some("arguments.spec(json).env[0].value"))),
    case("benign name/value pairs", call!(r#"{"headers":[{"name":"Accept","value":"json"}],"tags":[{"key":"team","value":"infra"}],"name":"password_policy","value":1}"#), Allow),
    case("a secret label without a value", call!(r#"{"fields":[{"name":"password","type":"string"}]}"#), Allow),
    // ---- Client data outside tools/call arguments (MCP 2026-07-28): same name rules ----
    case("prompts/get arguments", r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"password":"x"}}}"#, Reject(S, "password", Some("params.arguments.password"))),
    case("prompts/get clean arguments", r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"topic":"x","max_tokens":"5"}}}"#, Allow),
    case("inputResponses of a retried tools/call", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{"env":"prod"},"inputResponses":{"confirm":{"action":"accept","content":{"password":"hunter2"}}},"requestState":"s1"}}"#, Reject(S, "password", Some("params.inputResponses.confirm.content.password"))),
    case("inputResponses clean", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{},"inputResponses":{"confirm":{"action":"accept","content":{"confirmed":true,"name":"octocat"}},"q":{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m","stopReason":"endTurn"}},"requestState":"opaque"}}"#, Allow),
    case("inputResponses of prompts/get", r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p","inputResponses":{"login":{"action":"accept","content":{"api_key":"k"}}}}}"#, Reject(S, "api_key", Some("params.inputResponses.login.content.api_key"))),
    case("inputResponses of resources/read", r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a","inputResponses":{"x":{"action":"accept","content":{"client_secret":"k"}}}}}"#, Reject(S, "client_secret", Some("params.inputResponses.x.content.client_secret"))),
    case("inputResponses of tasks/update", r#"{"jsonrpc":"2.0","id":2,"method":"tasks/update","params":{"taskId":"t1","inputResponses":{"x":{"action":"accept","content":{"db_password":"k"}}}}}"#, Reject(S, "password", Some("params.inputResponses.x.content.db_password"))),
    case("sampling result in inputResponses: tool input", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","inputResponses":{"s":{"role":"assistant","model":"m","content":[{"type":"tool_use","id":"u","name":"login","input":{"refresh_token":"r"}}]}}}}"#, Reject(S, "refresh_token", Some("params.inputResponses.s.content[0].input.refresh_token"))),
    case("_meta of tools/call", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"com.example/api_key":"k"}}}"#, Reject(S, "api_key", Some("params._meta[\"com.example/api_key\"]"))),
    case("_meta of a notification", r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"_meta":{"vendor":{"access_token":"x"}}}}"#, Reject(S, "access_token", Some("params._meta.vendor.access_token"))),
    case("_meta of 2026-07-28 requests", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c","version":"1","websiteUrl":"https://c.example"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"form":{}},"sampling":{}},"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","baggage":"k=v"}}}"#, Allow),
    case("completion of a secret argument", r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"login"},"argument":{"name":"password","value":"hun"}}}"#, Reject(S, "password", Some("params.argument.value"))),
    case("completion of a plain argument", r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"language","value":"py"},"context":{"arguments":{"framework":"flask"}}}}"#, Allow),
    case("completion context arguments", r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"q","value":"a"},"context":{"arguments":{"apiKey":"k"}}}}"#, Reject(S, "api_key", Some("params.context.arguments.apiKey"))),
    case("a client's elicitation answer (response)", r#"{"jsonrpc":"2.0","id":9,"result":{"action":"accept","content":{"passphrase":"x"}}}"#, Reject(S, "passphrase", Some("result.content.passphrase"))),
    case("a client's error response data", r#"{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"m","data":{"password":"x"}}}"#, Reject(S, "password", Some("error.data.password"))),
    case("completion Name/Value spelled otherwise", r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"Name":"password","Value":"x"}}}"#, Reject(R, "noncanonical_member", Some("params.argument.Name"))),
    case("completion context Arguments", r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"q","value":"a"},"context":{"Arguments":{"apiKey":"k"}}}}"#, Reject(R, "noncanonical_member", Some("params.context.Arguments"))),
    case("a client's sampling answer (response)", r#"{"jsonrpc":"2.0","id":9,"result":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"m","stopReason":"endTurn"}}"#, Allow),
    case("requestState holding a token", concat!(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","requestState":""#, tok!(), r#""}}"#), Reject(S, "amt_token_value", Some("params.requestState"))),
    case("InputResponses alone is refused", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","InputResponses":{}}}"#, Reject(R, "noncanonical_member", Some("params.InputResponses"))),
    case("prompts/get Arguments is refused", r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","Arguments":{"password":"x"}}}"#, Reject(R, "noncanonical_member", Some("params.Arguments"))),
    case("_META is refused", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_META":{}}}"#, Reject(R, "noncanonical_member", Some("params._META"))),
    case("let through: max_tokens", call!(r#"{"max_tokens":1}"#), Allow),
    case("let through: max_output_tokens", call!(r#"{"max_output_tokens":1}"#), Allow),
    case("let through: token_count", call!(r#"{"token_count":1}"#), Allow),
    case("let through: num_tokens", call!(r#"{"num_tokens":1}"#), Allow),
    case("let through: total_tokens", call!(r#"{"total_tokens":1}"#), Allow),
    case("let through: tokenizer", call!(r#"{"tokenizer":"x"}"#), Allow),
    case("let through: page_token", call!(r#"{"page_token":"x"}"#), Allow),
    case("let through: pageToken", call!(r#"{"pageToken":"x"}"#), Allow),
    case("let through: next_page_token", call!(r#"{"next_page_token":"x"}"#), Allow),
    case("let through: continuation_token", call!(r#"{"continuation_token":"x"}"#), Allow),
    case("let through: cursor", call!(r#"{"cursor":"x","next_cursor":"y"}"#), Allow),
    case("let through: progressToken", call!(r#"{"progressToken":"x"}"#), Allow),
    case("let through: author", call!(r#"{"author":"x","authors":["y"]}"#), Allow),
    case("let through: passage", call!(r#"{"passage":"x","passenger":"y","bypass":true}"#), Allow),
    case("let through: keyword", call!(r#"{"keyword":"x","keywords":[],"keyboard":"us"}"#), Allow),
    case("let through: key_id", call!(r#"{"key_id":"x","key_name":"y"}"#), Allow),
    case("let through: public_key", call!(r#"{"public_key":"x","primary_key":"id"}"#), Allow),
    case("let through: partition_key", call!(r#"{"partition_key":"x","sort_key":"y"}"#), Allow),
    case("let through: idempotency_key", call!(r#"{"idempotency_key":"x","cache_key":"y"}"#), Allow),
    case("let through: secret_name", call!(r#"{"secret_name":"x","secret_id":"y","secret_ref":"z"}"#), Allow),
    case("let through: credential_id", call!(r#"{"credential_id":"x"}"#), Allow),
    case("let through: api_version", call!(r#"{"api_version":"x","api_url":"y"}"#), Allow),
    case("let through: access_level", call!(r#"{"access_level":"x"}"#), Allow),
    case("let through: password_policy", call!(r#"{"password_policy":"x","password_min_length":8}"#), Allow),
    case("let through: camel variants", call!(r#"{"maxTokens":1,"nextPageToken":"x","secretName":"y","publicKey":"z","OAuthClientId":"c"}"#), Allow),
    // ---- Secret names ----
    case("catch: password", call!(r#"{"password":"x"}"#), Reject(S, "password", Some("arguments.password"))),
    case("catch: Password upper", call!(r#"{"PASSWORD":"x"}"#), Reject(S, "password", Some("arguments.PASSWORD"))),
    case("catch: passwd", call!(r#"{"passwd":"x"}"#), Reject(S, "passwd", None)),
    case("catch: pwd", call!(r#"{"db_pwd":"x"}"#), Reject(S, "pwd", None)),
    case("catch: passphrase", call!(r#"{"passphrase":"x"}"#), Reject(S, "passphrase", None)),
    case("catch: secret", call!(r#"{"secret":"x"}"#), Reject(S, "secret", None)),
    case("catch: client_secret", call!(r#"{"client_secret":"x"}"#), Reject(S, "client_secret", None)),
    case("catch: clientSecret", call!(r#"{"clientSecret":"x"}"#), Reject(S, "client_secret", Some("arguments.clientSecret"))),
    case("catch: api_key", call!(r#"{"api_key":"x"}"#), Reject(S, "api_key", Some("arguments.api_key"))),
    case("catch: apiKey", call!(r#"{"apiKey":"x"}"#), Reject(S, "api_key", None)),
    case("catch: APIKey", call!(r#"{"APIKey":"x"}"#), Reject(S, "api_key", None)),
    case("catch: apikey", call!(r#"{"apikey":"x"}"#), Reject(S, "api_key", None)),
    case("catch: x-api-key", call!(r#"{"x-api-key":"x"}"#), Reject(S, "api_key", Some("arguments.x-api-key"))),
    case("catch: access_key", call!(r#"{"aws_access_key":"x"}"#), Reject(S, "access_key", None)),
    case("catch: secret_key", call!(r#"{"secretKey":"x"}"#), Reject(S, "secret_key", None)),
    case("catch: private_key", call!(r#"{"private_key":"x"}"#), Reject(S, "private_key", None)),
    case("catch: access_token", call!(r#"{"access_token":"x"}"#), Reject(S, "access_token", None)),
    case("catch: refresh_token", call!(r#"{"refreshToken":"x"}"#), Reject(S, "refresh_token", None)),
    case("catch: auth_token", call!(r#"{"auth_token":"x"}"#), Reject(S, "auth_token", None)),
    case("catch: HTTPAuthToken", call!(r#"{"HTTPAuthToken":"x"}"#), Reject(S, "auth_token", None)),
    case("catch: bearer", call!(r#"{"bearer":"x"}"#), Reject(S, "bearer", None)),
    case("catch: bearer_token", call!(r#"{"bearer_token":"x"}"#), Reject(S, "bearer", None)),
    case("catch: id_token", call!(r#"{"IDToken":"x"}"#), Reject(S, "id_token", None)),
    case("catch: session_token", call!(r#"{"session_token":"x"}"#), Reject(S, "session_token", None)),
    // A session id is a handle to something the server created (browser, agent, terminal
    // sessions; MCP's own Mcp-Session-Id); a session's secret is its token or cookie.
    case("let through: session_id", call!(r#"{"sessionId":"x","session_id":"y"}"#), Allow),
    case("let through: _meta widgetSessionId", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"_meta":{"openai/widgetSessionId":"w"}}}"#, Allow),
    case("catch: session_cookie", call!(r#"{"session_cookie":"x"}"#), Reject(S, "cookie", None)),
    case("catch: token", call!(r#"{"token":"x"}"#), Reject(S, "token", None)),
    case("catch: github_token", call!(r#"{"GITHUB_TOKEN":"x"}"#), Reject(S, "token", None)),
    case("catch: credential", call!(r#"{"credential":"x"}"#), Reject(S, "credential", None)),
    case("catch: credentials", call!(r#"{"credentials":"user:pass"}"#), Reject(S, "credentials", None)),
    case("catch: a secret beside a category word", call!(r#"{"auth_password":{"v":1}}"#), Reject(S, "password", None)),
    case("catch: authorization", call!(r#"{"Authorization":"Bearer x"}"#), Reject(S, "authorization", None)),
    case("catch: auth", call!(r#"{"auth":"x"}"#), Reject(S, "auth", None)),
    case("catch: cookie", call!(r#"{"cookie":"x"}"#), Reject(S, "cookie", None)),
    case("catch: set-cookie", call!(r#"{"set-cookie":"x"}"#), Reject(S, "set_cookie", None)),
    case("catch: connection_string", call!(r#"{"connectionString":"x"}"#), Reject(S, "connection_string", None)),
    case("catch: dsn", call!(r#"{"sentry.dsn":"x"}"#), Reject(S, "dsn", Some("arguments[\"sentry.dsn\"]"))),
    case("catch: passWord hump", call!(r#"{"passWord":"x"}"#), Reject(S, "password", None)),
    case("catch: allow does not cover", call!(r#"{"page_token_password":"x"}"#), Reject(S, "password", None)),
    case("catch: escaped underscore", call!(r#"{"api\u005fkey":"x"}"#), Reject(S, "api_key", Some("arguments.api_key"))),
    case("catch: escaped p", call!(r#"{"\u0070assword":"x"}"#), Reject(S, "password", Some("arguments.password"))),
    case("catch: long s", call!(r#"{"ſecret":"x"}"#), Reject(S, "secret", None)),
    case("catch: kelvin", call!(r#"{"api_\u212Aey":"x"}"#), Reject(S, "api_key", None)),
    case("catch: fullwidth", call!(r#"{"ｐａｓｓｗｏｒｄ":"x"}"#), Reject(S, "password", None)),
    case("catch: nested", call!(r#"{"config":{"db":{"api_key":"x"}}}"#), Reject(S, "api_key", Some("arguments.config.db.api_key"))),
    case("catch: object inside array", call!(r#"{"items":[{"a":1},{"b":2},{"password":"x"}]}"#), Reject(S, "password", Some("arguments.items[2].password"))),
    case("catch: array in array", call!(r#"{"m":[[{"token":"x"}]]}"#), Reject(S, "token", Some("arguments.m[0][0].token"))),
    case("let through: a boolean or null under a secret's name carries nothing", call!(r#"{"password":null,"hide_password":true,"with_credentials":false,"auth":true}"#), Allow),
    case("catch: a number under a secret's name (a PIN)", call!(r#"{"passcode":1234}"#), Reject(S, "passcode", None)),
    case("catch: a flag's words do not clear a string", call!(r#"{"with_password":"hunter2"}"#), Reject(S, "password", None)),
    case("catch: an array under a secret's name", call!(r#"{"password":[true]}"#), Reject(S, "password", None)),
    case("catch: odd key path escaped", call!(r#"{"my password":"x"}"#), Reject(S, "password", Some("arguments[\"my password\"]"))),
    case("catch: first in document order", call!(r#"{"ok":1,"token":"a","password":"b"}"#), Reject(S, "token", Some("arguments.token"))),
    // ---- Secret values ----
    case("amt value under innocent name", call!(concat!(r#"{"config":""#, tok!(), r#""}"#)), Reject(S, "amt_token_value", Some("arguments.config"))),
    case("amt value inside text", call!(concat!(r#"{"note":"use Bearer "#, tok!(), r#" please"}"#)), Reject(S, "amt_token_value", Some("arguments.note"))),
    case("amt value escaped", call!(r#"{"c":"amt\u005fk3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8"}"#), Reject(S, "amt_token_value", Some("arguments.c"))),
    case("amt value in array", call!(concat!(r#"{"l":["a",""#, tok!(), r#""]}"#)), Reject(S, "amt_token_value", Some("arguments.l[1]"))),
    case("amt value as a key is redacted", call!(concat!(r#"{"x":{""#, tok!(), r#"":1}}"#)), Reject(S, "amt_token_value", Some("arguments.x[?]"))),
    case("amt in JSON in a string", call!(concat!(r#"{"payload":"{\"x\":\""#, tok!(), r#"\"}"}"#)), Reject(S, "amt_token_value", Some("arguments.payload"))),
    case("amt escaped in JSON in a string", call!(r#"{"p":"{\"x\":\"amt\\u005fk3x9a0b1c2d3_Zk3x9a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5q6r7s8\"}"}"#), Reject(S, "amt_token_value", Some("arguments.p(json).x"))),
    case("amt in _meta", concat!(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"note":""#, tok!(), r#""}}}"#), Reject(S, "amt_token_value", Some("params._meta.note"))),
    case("amt in other method", concat!(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"https://x/?k="#, tok!(), r#""}}"#), Reject(S, "amt_token_value", Some("params.uri"))),
    case("amt in response", concat!(r#"{"jsonrpc":"2.0","id":1,"result":{"content":{"key":""#, tok!(), r#""}}}"#), Reject(S, "amt_token_value", Some("result.content.key"))),
    case("amt in id is not echoed", concat!(r#"{"jsonrpc":"2.0","id":""#, tok!(), r#"","method":"ping"}"#), Reject(S, "amt_token_value", Some("id"))),
    // ---- JSON in a string ----
    case("name in JSON in a string", call!(r#"{"payload":"{\"password\":\"x\"}"}"#), Reject(S, "password", Some("arguments.payload(json).password"))),
    case("name in JSON array in a string", call!(r#"{"payload":" [ {\"apiKey\":1} ]"}"#), Reject(S, "api_key", Some("arguments.payload(json)[0].apiKey"))),
    case("name in JSON string in a string", call!(r#"{"payload":"\"{\\\"token\\\":1}\""}"#), Reject(S, "token", Some("arguments.payload(json)(json).token"))),
    case("two levels of JSON in a string", call!(r#"{"a":"{\"b\":\"{\\\"api_key\\\":1}\"}"}"#), Reject(S, "api_key", Some("arguments.a(json).b(json).api_key"))),
    case("three levels: loose scan", call!(r#"{"a":"{\"b\":\"{\\\"c\\\":\\\"{\\\\\\\"secret\\\\\\\":1}\\\"}\"}"}"#), Reject(S, "secret", Some("arguments.a(json).b(json).c(json).secret"))),
    case("malformed JSON in a string: loose", call!(r#"{"payload":"{\"password\":\"x\",}"}"#), Reject(S, "password", Some("arguments.payload(json).password"))),
    case("duplicate keys in JSON in a string: loose", call!(r#"{"payload":"{\"a\":1,\"a\":2,\"token\":3}"}"#), Reject(S, "token", None)),
    case("JSON5 keys in a string: loose", call!(r#"{"payload":"{ apiKey: 'x' }"}"#), Reject(S, "api_key", None)),
    case("single quotes in a string: loose", call!(r#"{"payload":"{'pwd': 1}"}"#), Reject(S, "pwd", None)),
    case("trailing data in JSON in a string: loose", call!(r#"{"payload":"{\"secret\":1} trailing"}"#), Reject(S, "secret", None)),
    case("JSON in a string outside arguments: no names", r#"{"jsonrpc":"2.0","id":1,"method":"x/y","params":{"p":"{\"password\":1}"}}"#, Allow),
    // ---- Duplicate keys ----
    case("duplicate arguments", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"arguments":{"password":"p"}}}"#, Reject(P, "duplicate_key", None)),
    case("duplicate name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"evil","arguments":{}}}"#, Reject(P, "duplicate_key", None)),
    case("duplicate method", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#, Reject(P, "duplicate_key", None)),
    case("duplicate deep in arguments", call!(r#"{"a":{"b":[{"c":{"d":1,"e":2,"d":3}}]}}"#), Reject(P, "duplicate_key", None)),
    case("duplicate via escape", call!(r#"{"q":1,"\u0071":2}"#), Reject(P, "duplicate_key", None)),
    case("duplicate jsonrpc", r#"{"jsonrpc":"2.0","jsonrpc":"1.0","method":"ping","id":1}"#, Reject(P, "duplicate_key", None)),
    // ---- Case folding ----
    case("Params collides with params", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"Params":{"name":"y"}}"#, Reject(P, "case_fold_collision", None)),
    case("NAME collides with name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","NAME":"y"}}"#, Reject(P, "case_fold_collision", None)),
    case("long s collides", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"paramſ":{"name":"y"}}"#, Reject(P, "case_fold_collision", None)),
    case("kelvin collides", call!(r#"{"key":1,"\u212Aey":2}"#), Reject(P, "case_fold_collision", None)),
    case("raw kelvin collides", call!("{\"key\":1,\"\u{212A}ey\":2}"), Reject(P, "case_fold_collision", None)),
    case("deep collision", call!(r#"{"a":[{"Path":1,"path":2}]}"#), Reject(P, "case_fold_collision", None)),
    case("sharp s collides with ss", call!(r#"{"strasse":1,"STRAẞE":2}"#), Reject(P, "case_fold_collision", None)),
    case("Params alone is refused", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Params":{"name":"x","arguments":{"password":1}}}"#, Reject(R, "noncanonical_member", Some("Params"))),
    case("Method alone is refused", r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call"}"#, Reject(R, "noncanonical_member", Some("Method"))),
    case("long-s params alone is refused", r#"{"jsonrpc":"2.0","id":1,"method":"ping","paramſ":{}}"#, Reject(R, "noncanonical_member", Some("[\"param\\u017f\"]"))),
    case("NAME alone is refused", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"x","arguments":{}}}"#, Reject(R, "noncanonical_member", Some("params.NAME"))),
    case("Arguments alone is refused", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Arguments":{"password":1}}}"#, Reject(R, "noncanonical_member", Some("params.Arguments"))),
    // ---- Invisible and control characters in keys ----
    case("NUL in key", call!(r#"{"field\u0000":1}"#), Reject(P, "invisible_key_char", None)),
    case("zero width space in key", call!(r#"{"pass\u200bword":1}"#), Reject(P, "invisible_key_char", None)),
    case("raw zero width joiner in key", call!("{\"na\u{200d}me\":1}"), Reject(P, "invisible_key_char", None)),
    case("BOM inside key", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\ufeffname":"x","name":"y"}}"#, Reject(P, "invisible_key_char", None)),
    case("bidi override in key", call!(r#"{"\u202eyek_ipa":1}"#), Reject(P, "invisible_key_char", None)),
    case("soft hyphen in key", call!(r#"{"pass\u00adword":1}"#), Reject(P, "invisible_key_char", None)),
    case("C1 control in key", call!(r#"{"a\u0085":1}"#), Reject(P, "invisible_key_char", None)),
    case("DEL in key", call!("{\"a\u{7f}\":1}"), Reject(P, "invisible_key_char", None)),
    case("tag character in key", call!("{\"a\u{E0041}\":1}"), Reject(P, "invisible_key_char", None)),
    case("raw control in string", call!("{\"a\":\"x\ty\"}"), Reject(P, "control_char", None)),
    // ---- Encoding, framing, numbers ----
    case("BOM at start", concat!("\u{feff}", call!("{}")), Reject(P, "bom", None)),
    case("trailing garbage", concat!(call!("{}"), "x"), Reject(P, "trailing_data", None)),
    case("second message appended", concat!(call!("{}"), call!(r#"{"password":1}"#)), Reject(P, "trailing_data", None)),
    case("trailing NUL", concat!(call!("{}"), "\0"), Reject(P, "trailing_data", None)),
    case("block comment", call!(r#"{/* c */"a":1}"#), Reject(P, "syntax", None)),
    case("line comment after", concat!(call!("{}"), "// c"), Reject(P, "trailing_data", None)),
    case("trailing comma", call!(r#"{"a":1,}"#), Reject(P, "syntax", None)),
    case("single quotes", r#"{'jsonrpc':'2.0'}"#, Reject(P, "syntax", None)),
    case("truncated", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":1}"#, Reject(P, "syntax", None)),
    case("empty body", "", Reject(P, "syntax", None)),
    case("1E400", call!(r#"{"n":1E400}"#), Reject(P, "number_out_of_range", None)),
    case("-1e309", call!(r#"{"n":-1e309}"#), Reject(P, "number_out_of_range", None)),
    case("f64::MAX, which serde_json refuses", call!(r#"{"n":1.7976931348623157e308}"#), Reject(P, "number_out_of_range", None)),
    case("NaN", call!(r#"{"n":NaN}"#), Reject(P, "syntax", None)),
    case("leading zero", call!(r#"{"n":01}"#), Reject(P, "syntax", None)),
    case("lone high surrogate in value", call!(r#"{"a":"\ud800"}"#), Reject(P, "lone_surrogate", None)),
    case("lone low surrogate in key", call!(r#"{"\udc00a":1}"#), Reject(P, "lone_surrogate", None)),
    case("reversed surrogates", call!(r#"{"a":"\udc00\ud800"}"#), Reject(P, "lone_surrogate", None)),
    bytes("invalid UTF-8 byte", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"a\":\"\xff\"}}}", Reject(P, "invalid_utf8", None)),
    bytes("overlong UTF-8", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"a\xc0\xaf\":1}}}", Reject(P, "invalid_utf8", None)),
    bytes("UTF-8 encoded surrogate", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xed\xa0\x80\"}", Reject(P, "invalid_utf8", None)),
    bytes("UTF-16 body", b"{\0\"\0j\0\"\0:\x001\0}\0", Reject(P, "syntax", None)),
    bytes("truncated UTF-8 at end", b"{\"jsonrpc\":\"2.0\",\"method\":\"a\xe2\x82\"}", Reject(P, "invalid_utf8", None)),
    // ---- JSON-RPC shape and batches ----
    case("batch with one secret element", concat!("[", call!(r#"{"a":1}"#), ",", call!(r#"{"password":"x"}"#), "]"), Reject(S, "password", Some("[1].arguments.password"))),
    case("batch with one amt element", concat!("[", r#"{"jsonrpc":"2.0","method":"notifications/x"}"#, ",", call!(concat!(r#"{"c":""#, tok!(), r#""}"#)), "]"), Reject(S, "amt_token_value", Some("[1].arguments.c"))),
    case("batch with one invalid element", concat!("[", call!("{}"), r#",{"jsonrpc":"1.0","method":"x"}]"#), Reject(R, "invalid_message", Some("[1]"))),
    case("batch with a non-object", concat!("[", call!("{}"), ",1]"), Reject(R, "invalid_message", Some("[1]"))),
    case("batch with a nested batch", concat!("[[", call!("{}"), "]]"), Reject(R, "invalid_message", Some("[0]"))),
    case("empty batch", "[]", Reject(R, "empty_batch", None)),
    case("top-level string", r#""tools/call""#, Reject(R, "invalid_message", None)),
    case("top-level null", "null", Reject(R, "invalid_message", None)),
    case("jsonrpc missing", r#"{"id":1,"method":"ping"}"#, Reject(R, "invalid_message", None)),
    case("jsonrpc wrong", r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, Reject(R, "invalid_message", None)),
    case("jsonrpc number", r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, Reject(R, "invalid_message", None)),
    case("method not a string", r#"{"jsonrpc":"2.0","id":1,"method":1}"#, Reject(R, "invalid_message", None)),
    case("id an object", r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, Reject(R, "invalid_message", None)),
    case("params a string", r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#, Reject(R, "invalid_message", None)),
    case("request with result", r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#, Reject(R, "invalid_message", None)),
    case("response with result and error", r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#, Reject(R, "invalid_message", None)),
    case("response without id", r#"{"jsonrpc":"2.0","result":{}}"#, Reject(R, "invalid_message", None)),
    case("neither method nor result", r#"{"jsonrpc":"2.0","id":1}"#, Reject(R, "invalid_message", None)),
    case("tools/call without params", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, Reject(S, "invalid_tool_call", Some("params"))),
    case("tools/call params array", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}"#, Reject(S, "invalid_tool_call", Some("params"))),
    case("tools/call name number", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}"#, Reject(S, "invalid_tool_call", Some("params"))),
    case("tools/call arguments array", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[{"password":1}]}}"#, Reject(S, "invalid_tool_call", Some("arguments"))),
    case("tools/call arguments null", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}"#, Reject(S, "invalid_tool_call", Some("arguments"))),
    case("tools/call method escaped", r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"x","arguments":{"token":1}}}"#, Reject(S, "token", Some("arguments.token"))),
    // ---- Mcp-Method / Mcp-Name headers ----
    hdr("headers match", call!("{}"), &["tools/call"], &["deploy"], Allow),
    hdr("base64 Mcp-Name matches", call!("{}"), &["tools/call"], &["=?base64?ZGVwbG95?="], Allow),
    hdr("Mcp-Method differs", call!("{}"), &["tools/list"], &[], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Method case differs", call!("{}"), &["Tools/Call"], &[], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Name differs", call!("{}"), &["tools/call"], &["other"], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Name bad base64", call!("{}"), &[], &["=?base64?***?="], Reject(H, "header_mismatch", None)),
    hdr("two Mcp-Method values", call!("{}"), &["tools/call", "tools/call"], &[], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Name without body name", r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, &["ping"], &["x"], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Name uri for resources/read", r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","name":"x"}}"#, &["resources/read"], &["file:///a"], Allow),
    hdr("Mcp-Name must be the uri for resources/read", r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a","name":"x"}}"#, &["resources/read"], &["x"], Reject(H, "header_mismatch", None)),
    hdr("Mcp-Method on a response", r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &["ping"], &[], Reject(H, "header_mismatch", None)),
    hdr("headers on a batch", concat!("[", call!("{}"), "]"), &["tools/call"], &[], Reject(H, "header_mismatch", None)),
];

fn verdict(case: &Case, body: &[u8]) -> Verdict {
    let headers = McpHeaders {
        method: case.method_hdr,
        name: case.name_hdr,
    };
    inspect_request(body, &headers, &InspectConfig::default())
}

fn check(name: &str, verdict: &Verdict, expect: Expect) {
    match (verdict, expect) {
        (Verdict::Allow, Allow) => {}
        (Verdict::Reject(r), Reject(code, rule, path)) => {
            assert_eq!(r.code, code, "{name}: code ({r:?})");
            assert_eq!(r.rule, rule, "{name}: rule ({r:?})");
            if let Some(path) = path {
                assert_eq!(r.path, path, "{name}: path");
            }
            assert_eq!(r.status, 400, "{name}");
        }
        (got, want) => panic!("{name}: expected {want:?}, got {got:?}"),
    }
}

#[test]
fn table() {
    for case in CASES {
        let v = verdict(case, case.body);
        check(case.name, &v, case.expect);
    }
}

#[test]
fn table_in_chunks_of_1_to_7_bytes() {
    for case in CASES {
        let whole = verdict(case, case.body);
        for chunk in 1..=7 {
            for max_read in [chunk, 3, usize::MAX] {
                let body = replay_chunked(case.body, &[chunk], max_read, 1 << 20)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                assert_eq!(body, case.body, "{}: reassembly", case.name);
                assert_eq!(
                    verdict(case, &body),
                    whole,
                    "{} in {chunk}-byte chunks",
                    case.name
                );
            }
        }
        // Irregular chunking.
        let body = replay_chunked(case.body, &[3, 1, 7, 2, 5], 4, 1 << 20).unwrap();
        assert_eq!(verdict(case, &body), whole, "{} irregular", case.name);
    }
}

#[test]
fn over_limit_bodies_are_never_judged() {
    let body = call!(r#"{"a":1}"#).as_bytes();
    for chunk in 1..=7 {
        assert_eq!(
            replay_chunked(body, &[chunk], usize::MAX, body.len() - 1),
            Err(super::body::Step::OverLimit)
        );
        assert!(replay_chunked(body, &[chunk], usize::MAX, body.len()).is_ok());
    }
}

/// Depth limit: nesting inside `arguments` counts from the top-level object.
fn nested_call(depth: usize) -> String {
    // Top object (1) > params (2) > arguments (3) > `depth - 3` more levels.
    let extra = depth.saturating_sub(3);
    let mut args = String::from("{\"a\":");
    for i in 0..extra {
        args.push_str(if i % 2 == 0 { "[" } else { "{\"a\":" });
    }
    args.push('1');
    for i in (0..extra).rev() {
        args.push(if i % 2 == 0 { ']' } else { '}' });
    }
    args.push('}');
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{args}}}}}"#
    )
}

#[test]
fn nesting_at_and_over_the_limit() {
    let config = InspectConfig::default();
    let at = nested_call(64);
    assert!(inspect_body(at.as_bytes(), &config).is_allow());
    let over = nested_call(65);
    let v = inspect_body(over.as_bytes(), &config);
    assert_eq!(v.rejection().map(|r| r.rule.as_str()), Some("too_deep"));
    let bomb = "[".repeat(100_000);
    let v = inspect_body(bomb.as_bytes(), &config);
    assert_eq!(v.rejection().map(|r| r.rule.as_str()), Some("too_deep"));
    let strict = InspectConfig {
        max_depth: 4,
        ..InspectConfig::default()
    };
    assert!(inspect_body(nested_call(4).as_bytes(), &strict).is_allow());
    assert!(!inspect_body(nested_call(5).as_bytes(), &strict).is_allow());
    for chunk in 1..=7 {
        let body = replay_chunked(over.as_bytes(), &[chunk], usize::MAX, 1 << 20).unwrap();
        assert_eq!(
            inspect_body(&body, &config),
            inspect_body(over.as_bytes(), &config)
        );
    }
}

#[test]
fn json_in_a_string_nested_deeper_than_the_limit_still_gets_names_checked() {
    // Build 6 levels of JSON-in-a-string around {"password":1}.
    let mut inner = String::from(r#"{"password":1}"#);
    for _ in 0..6 {
        let mut escaped = String::new();
        crate::text::json_escape_into(&inner, &mut escaped);
        inner = format!(r#"{{"x":"{escaped}"}}"#);
    }
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{inner}}}}}"#
    );
    let v = inspect_body(body.as_bytes(), &InspectConfig::default());
    assert_eq!(
        v.rejection().map(|r| r.rule.as_str()),
        Some("password"),
        "{v:?}"
    );
}

#[test]
fn rejection_bodies_are_json_rpc_errors_without_values() {
    let secret_value = "hunter2-the-secret-value";
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"req-\"1\"","method":"tools/call","params":{{"name":"de\"ploy","arguments":{{"config":{{"api_key":"{secret_value}"}}}}}}}}"#
    );
    let Verdict::Reject(r) = inspect_body(body.as_bytes(), &InspectConfig::default()) else {
        panic!("allowed");
    };
    assert_eq!(r.kind, RejectKind::SecretName);
    assert_eq!(r.tool.as_deref(), Some("de\\\"ploy"));
    let reply = r.body();
    assert!(!reply.contains(secret_value));
    assert!(!r.message.contains(secret_value));
    let parsed: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(parsed["jsonrpc"], "2.0");
    assert_eq!(parsed["id"], "req-\"1\"");
    assert_eq!(parsed["error"]["code"], -32602);
    assert_eq!(parsed["error"]["data"]["path"], "arguments.config.api_key");
    assert_eq!(parsed["error"]["data"]["rule"], "api_key");
    let message = parsed["error"]["message"].as_str().unwrap();
    assert!(message.contains("arguments.config.api_key"), "{message}");
    assert!(message.contains("Authorization header"), "{message}");

    // Token values never appear, not in the path, message, id or tool.
    let token = tok!();
    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":"{token}","method":"tools/call","params":{{"name":"{token}","arguments":{{"{token}":1}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"a":{{"{token}":{{"password":1}}}}}}}}}}"#
        ),
        format!(r#"[{{"jsonrpc":"2.0","id":"{token}","method":"ping"}}]"#),
    ] {
        let Verdict::Reject(r) = inspect_body(body.as_bytes(), &InspectConfig::default()) else {
            panic!("allowed: {body}");
        };
        let reply = r.body();
        assert!(!reply.contains(token), "{reply}");
        assert!(!r.path.contains(token) && !r.message.contains(token));
        assert!(r.tool.as_deref().is_none_or(|t| !t.contains(token)));
        serde_json::from_str::<serde_json::Value>(&reply).unwrap();
    }

    // Ids: numbers and strings echoed raw, others null.
    for (id, echoed) in [
        ("1", "1"),
        ("-1.5e3", "-1.5e3"),
        (r#""a\u00e9""#, r#""a\u00e9""#),
        ("null", "null"),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"x","arguments":{{"token":1}}}}}}"#
        );
        let r = inspect_body(body.as_bytes(), &InspectConfig::default());
        let reply = r.rejection().unwrap().body();
        let parsed: serde_json::Value = serde_json::from_str(&reply).unwrap();
        let expected: serde_json::Value = serde_json::from_str(echoed).unwrap();
        assert_eq!(parsed["id"], expected, "{id}");
    }
    let long_id = format!(r#""{}""#, "i".repeat(200));
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{long_id},"method":"tools/call","params":{{"name":"x","arguments":{{"token":1}}}}}}"#
    );
    let r = inspect_body(body.as_bytes(), &InspectConfig::default());
    assert_eq!(r.rejection().unwrap().id, None);
    // Parse errors echo nothing.
    let r = inspect_body(b"{\"id\":5,", &InspectConfig::default());
    assert!(r.rejection().unwrap().body().contains("\"id\":null"));
}

#[test]
fn param_headers() {
    let config = InspectConfig::default();
    for (name, rule) in [
        ("mcp-param-api-key", Some("api_key")),
        ("Mcp-Param-ApiKey", Some("api_key")),
        ("mcp-param-clientsecret", Some("client_secret")),
        ("mcp-param-authorization", Some("authorization")),
        ("mcp-param-password", Some("password")),
        ("mcp-param-region", None),
        ("mcp-param-page-token", None),
        ("mcp-param-max-tokens", None),
        ("x-api-key", None),
        ("mcp-method", None),
        ("mcp-param", None),
    ] {
        let v = check_param_header_name(name, &config);
        assert_eq!(v.rejection().map(|r| r.rule.as_str()), rule, "{name}");
        if let Some(r) = v.rejection() {
            assert_eq!(r.code, INVALID_PARAMS);
            assert!(r.path.starts_with("header:"), "{}", r.path);
            serde_json::from_str::<serde_json::Value>(&r.body()).unwrap();
        }
    }
    let token = tok!();
    let v = check_param_header("mcp-param-region", token, &config);
    assert_eq!(
        v.rejection().map(|r| r.rule.as_str()),
        Some("amt_token_value")
    );
    let encoded = "=?base64?YW10X2szeDlhMGIxYzJkM19aazN4OWEwYjFjMmQzZTRmNWc2aDdpOGo5azBsMW0ybjNvNHA1cTZyN3M4?=";
    let v = check_param_header("mcp-param-region", encoded, &config);
    assert_eq!(
        v.rejection().map(|r| r.rule.as_str()),
        Some("amt_token_value")
    );
    assert!(check_param_header("mcp-param-region", "us-east-1", &config).is_allow());
}

/// THREATS.md "Secret names": each "Let through" name passes and each "Catch" name is caught,
/// as an argument key and as an `Mcp-Param-*` header name.
#[test]
fn threat_model_name_table() {
    const LET_THROUGH: &[&str] = &[
        "max_tokens",
        "max_output_tokens",
        "token_count",
        "num_tokens",
        "total_tokens",
        "tokenizer",
        "page_token",
        "pageToken",
        "next_page_token",
        "continuation_token",
        "cursor",
        "next_cursor",
        "progressToken",
        "author",
        "authors",
        "passage",
        "passenger",
        "bypass",
        "keyword",
        "keywords",
        "keyboard",
        "key_id",
        "key_name",
        "public_key",
        "primary_key",
        "partition_key",
        "sort_key",
        "idempotency_key",
        "cache_key",
        "secret_name",
        "secret_id",
        "secret_ref",
        "credential_id",
        "api_version",
        "api_url",
        "access_level",
        "password_policy",
        "password_min_length",
        "maxTokens",
        "nextPageToken",
        "NEXT_CURSOR",
    ];
    const CATCH: &[(&str, &str)] = &[
        ("password", "password"),
        ("passwd", "passwd"),
        ("pwd", "pwd"),
        ("passphrase", "passphrase"),
        ("secret", "secret"),
        ("client_secret", "client_secret"),
        ("api_key", "api_key"),
        ("apikey", "api_key"),
        ("access_key", "access_key"),
        ("secret_key", "secret_key"),
        ("private_key", "private_key"),
        ("access_token", "access_token"),
        ("refresh_token", "refresh_token"),
        ("auth_token", "auth_token"),
        ("bearer", "bearer"),
        ("bearer_token", "bearer"),
        ("id_token", "id_token"),
        ("session_token", "session_token"),
        ("token", "token"),
        ("credential", "credential"),
        ("credentials", "credentials"),
        ("authorization", "authorization"),
        ("cookie", "cookie"),
        ("connection_string", "connection_string"),
        ("dsn", "dsn"),
        ("auth", "auth"),
        ("set_cookie", "set_cookie"),
        ("Password", "password"),
        ("userPassword", "password"),
        ("DB_PASSWORD", "password"),
        ("clientSecret", "client_secret"),
        ("apiKey", "api_key"),
        ("APIKey", "api_key"),
        ("HTTPAuthToken", "auth_token"),
        ("accessToken", "access_token"),
        ("refresh-token", "refresh_token"),
        ("privateKey", "private_key"),
        ("x.api.key", "api_key"),
        ("Api Key", "api_key"),
        ("passwords", "password"),
        ("apiKeys", "api_key"),
        ("Cookies", "cookie"),
    ];
    let config = InspectConfig::default();
    for name in LET_THROUGH {
        assert_eq!(config.names.check(name), None, "{name} should pass");
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"{name}":1}}}}}}"#
        );
        assert!(inspect_body(body.as_bytes(), &config).is_allow(), "{name}");
    }
    for (name, rule) in CATCH {
        assert_eq!(
            config.names.check(name).map(|m| m.rule),
            Some(*rule),
            "{name}"
        );
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"x":[{{"{name}":1}}]}}}}}}"#
        );
        let v = inspect_body(body.as_bytes(), &config);
        assert_eq!(
            v.rejection().map(|r| r.rule.as_str()),
            Some(*rule),
            "{name}"
        );
        // Envoy lower-cases header names: clients write humps as dashes (`Mcp-Param-Api-Key`).
        let header = format!("mcp-param-{}", split_words(name).join("-"));
        assert!(
            !check_param_header_name(&header, &config).is_allow(),
            "{header}"
        );
    }
}

#[test]
fn extensible_policy() {
    let config = InspectConfig {
        names: NamePolicy::with_extra(["github token", "sk"], ["auth header"]).unwrap(),
        ..InspectConfig::default()
    };
    let v = inspect_body(call!(r#"{"githubtoken":1}"#).as_bytes(), &config);
    assert_eq!(v.rejection().map(|r| r.rule.as_str()), Some("github_token"));
    assert!(inspect_body(call!(r#"{"auth_header":"basic"}"#).as_bytes(), &config).is_allow());
    assert!(!inspect_body(
        call!(r#"{"auth_header":"basic"}"#).as_bytes(),
        &InspectConfig::default()
    )
    .is_allow());
}

/// A small deterministic PRNG (xorshift64*), so the property test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn collect_keys(value: &serde_json::Value, out: &mut Vec<String>, level: usize) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                // A category container is judged by its members (docs/body-policy.md, "Word roles"); a
                // boolean or null carries nothing.
                let container = v.is_object() || v.is_array();
                if v.is_boolean() || v.is_null() {
                    continue;
                }
                if super::reference::reference_denies_key(k, container).is_some()
                    || reference_denies(k).is_none()
                {
                    out.push(k.clone());
                }
                collect_keys(v, out, level);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                collect_keys(v, out, level);
            }
        }
        serde_json::Value::String(s) if level < 3 => {
            if let Ok(inner) = serde_json::from_str::<serde_json::Value>(s) {
                collect_keys(&inner, out, level + 1);
            }
        }
        _ => {}
    }
}

fn random_key(rng: &mut Rng) -> String {
    const WORDS: &[&str] = &[
        "api",
        "key",
        "token",
        "tokens",
        "max",
        "page",
        "next",
        "pass",
        "word",
        "password",
        "secret",
        "name",
        "auth",
        "author",
        "id",
        "session",
        "access",
        "refresh",
        "client",
        "private",
        "public",
        "cookie",
        "set",
        "bearer",
        "credential",
        "credentials",
        "dsn",
        "pwd",
        "cursor",
        "count",
        "data",
        "url",
        "version",
        "oauth",
        "o",
        "level",
        "policy",
        "query",
        "progress",
        "sort",
        "cache",
        "ref",
        "connection",
        "string",
        "phrase",
        "2",
        "x",
        "ſecret",
        "\u{212A}ey",
        "ιd",
    ];
    const SEPS: &[&str] = &["", "", "_", "-", ".", " ", "/"];
    let n = 1 + rng.below(4);
    let mut key = String::new();
    for i in 0..n {
        if i > 0 {
            let sep: &&str = rng.pick(SEPS);
            key.push_str(sep);
        }
        let word = *rng.pick(WORDS);
        match rng.below(4) {
            0 => key.push_str(&word.to_uppercase()),
            1 => {
                let mut c = word.chars();
                if let Some(first) = c.next() {
                    key.extend(first.to_uppercase());
                    key.push_str(c.as_str());
                }
            }
            _ => key.push_str(word),
        }
    }
    key
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    crate::text::json_escape_into(s, &mut out);
    out
}

fn random_value(rng: &mut Rng, depth: usize) -> String {
    match if depth > 2 { 0 } else { rng.below(5) } {
        0 => "1".to_string(),
        1 => format!("\"{}\"", escape(&random_key(rng))),
        2 => format!("[{}]", random_value(rng, depth + 1)),
        3 => {
            let inner = random_object(rng, depth + 1);
            format!("\"{}\"", escape(&inner))
        }
        _ => random_object(rng, depth + 1),
    }
}

fn random_object(rng: &mut Rng, depth: usize) -> String {
    let n = rng.below(4);
    let members: Vec<String> = (0..n)
        .map(|i| {
            let key = format!(
                "{}{}",
                random_key(rng),
                if rng.below(3) == 0 {
                    format!("_{i}")
                } else {
                    String::new()
                }
            );
            format!("\"{}\":{}", escape(&key), random_value(rng, depth))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Property: for every generated body the inspector accepts, no key anywhere in the arguments
/// (JSON-in-a-string included), split and folded by an independent reference, holds a deny
/// phrase that no allow phrase covers. Both outcomes must be well represented.
#[test]
fn accepted_bodies_hold_no_denied_name() {
    let config = InspectConfig::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut accepted, mut rejected) = (0, 0);
    let iterations = if cfg!(target_arch = "wasm32") {
        1500
    } else {
        6000
    };
    for _ in 0..iterations {
        let args = random_object(&mut rng, 0);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{args}}}}}"#
        );
        match inspect_body(body.as_bytes(), &config) {
            Verdict::Allow => {
                accepted += 1;
                let parsed: serde_json::Value = serde_json::from_str(&args).unwrap();
                let mut keys = Vec::new();
                collect_keys(&parsed, &mut keys, 0);
                for key in keys {
                    assert_eq!(
                        reference_denies(&key),
                        None,
                        "accepted key {key:?} (words {:?}) in {body}",
                        split_words(&key)
                    );
                }
            }
            Verdict::Reject(r) => {
                rejected += 1;
                assert!(
                    r.code == INVALID_PARAMS
                        || r.rule == "case_fold_collision"
                        || r.rule == "duplicate_key",
                    "{r:?} for {body}"
                );
            }
        }
    }
    println!("property: {accepted} accepted, {rejected} rejected");
    assert!(
        accepted > iterations / 10 && rejected > iterations / 10,
        "{accepted} / {rejected}"
    );
}

/// Conversely, the reference and the policy agree on single generated names in both directions
/// (differences would be documented splitting decisions, so none are expected here).
#[test]
fn policy_agrees_with_reference_on_generated_names() {
    let policy = NamePolicy::default();
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let key = random_key(&mut rng);
        let reference = reference_denies(&key);
        let ours = policy.check(&key);
        assert_eq!(
            reference.is_some(),
            ours.is_some(),
            "{key:?}: reference {reference:?}, policy {ours:?}"
        );
    }
}

/// Throughput, by hand (best of 5 rounds):
/// `cargo test --release --lib -p mcp-guard mcp::tests::throughput -- --ignored --nocapture --test-threads 1`
/// (add `--target wasm32-wasip1` to measure in Node's V8). `throughput_breakdown` also shows
/// UTF-8 validation and parse-only speeds.
#[test]
#[ignore]
fn throughput() {
    let config = InspectConfig::default();
    for (label, size) in [
        ("1 KiB", 1024usize),
        ("64 KiB", 64 * 1024),
        ("1 MiB", 1024 * 1024),
    ] {
        let body = sample_body(size);
        assert!(inspect_body(body.as_bytes(), &config).is_allow());
        // Best of 5 rounds: the machine is shared.
        let iterations = (16 * 1024 * 1024 / body.len()).clamp(10, 50_000);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = std::time::Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(inspect_body(std::hint::black_box(body.as_bytes()), &config));
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let mb = (body.len() * iterations) as f64 / (1024.0 * 1024.0);
        println!(
            "{label} tools/call ({} bytes): {:.0} MiB/s, {:.1} us/body",
            body.len(),
            mb / best,
            best * 1e6 / iterations as f64
        );
    }
    // A typical small call: a few scalar arguments and one text argument.
    let text = "Steps to reproduce:\\n1. Open the dashboard\\n2. Click \\\"Export\\\" \\u00e9\\n"
        .repeat(13);
    let simple = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"create_issue","arguments":{{"owner":"acme","repo":"widgets","title":"Export button does nothing","body":"{text}","labels":["bug","ui"],"assignees":["octocat"]}}}}}}"#
    );
    assert!(
        inspect_body(simple.as_bytes(), &config).is_allow(),
        "{simple}"
    );
    let iterations = 20_000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(inspect_body(
                std::hint::black_box(simple.as_bytes()),
                &config,
            ));
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "1 KiB simple tools/call ({} bytes): {:.0} MiB/s, {:.1} us/body",
        simple.len(),
        (simple.len() * iterations) as f64 / (1024.0 * 1024.0) / best,
        best * 1e6 / iterations as f64
    );
    let blocked = call!(r#"{"query":"x","config":{"api_key":"sk-123"}}"#);
    let iterations = 200_000;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        let v = inspect_body(std::hint::black_box(blocked.as_bytes()), &config);
        std::hint::black_box(v.rejection().map(Rejection::body));
    }
    println!(
        "blocked call + reply: {:.2} us",
        start.elapsed().as_secs_f64() * 1e6 / iterations as f64
    );
}

/// A realistic `tools/call` of about `size` bytes: nested arguments with short fields, numbers,
/// arrays, escaped text and a JSON-in-a-string.
fn sample_body(size: usize) -> String {
    let mut items = Vec::new();
    let mut total = 200;
    let mut i = 0;
    while total < size {
        let item = format!(
            r#"{{"id":{i},"title":"Item number {i}","tags":["alpha","beta","gamma"],"score":{}.{},"active":{},"description":"Line one of the text\nLine two with \"quotes\" and unicode \u00e9\u4e2d and a path C:\\tmp\\file_{i}.txt that goes on for a while to look like prose.","meta":{{"created_at":"2026-01-01T00:00:00Z","page_token":"p{i}","max_tokens":256}},"filter":"{{\"field\":\"status\",\"op\":\"eq\",\"value\":\"open\"}}"}}"#,
            i % 100,
            i % 10,
            i % 2 == 0
        );
        total += item.len() + 1;
        items.push(item);
        i += 1;
    }
    format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"search_items","arguments":{{"query":"open items","limit":50,"items":[{}]}},"_meta":{{"progressToken":"t-1"}}}}}}"#,
        items.join(",")
    )
}

#[test]
#[ignore]
fn throughput_breakdown() {
    for size in [1024, 1024 * 1024] {
        let body = sample_body(size);
        let opts = super::json::ParseOptions::default();
        let iterations = (32 * 1024 * 1024 / body.len()).max(30);
        let time = |f: &dyn Fn()| {
            let t = std::time::Instant::now();
            for _ in 0..iterations {
                f();
            }
            let mb = body.len() as f64 / (1024.0 * 1024.0);
            mb / (t.elapsed().as_secs_f64() / iterations as f64)
        };
        let utf8 = time(&|| {
            std::hint::black_box(
                core::str::from_utf8(std::hint::black_box(body.as_bytes())).is_ok(),
            );
        });
        let parse = time(&|| {
            std::hint::black_box(
                super::json::parse(std::hint::black_box(body.as_bytes()), &opts).is_ok(),
            );
        });
        let config = InspectConfig::default();
        let all = time(&|| {
            std::hint::black_box(inspect_body(std::hint::black_box(body.as_bytes()), &config));
        });
        println!(
            "{} bytes: utf8 {utf8:.0} MiB/s, parse {parse:.0} MiB/s, inspect {all:.0} MiB/s",
            body.len()
        );
    }
}

/// Mutation smoke test: random edits of the table bodies never panic; whatever the inspector
/// accepts, serde_json accepts too (the strict parser only ever narrows), and the keys of
/// accepted bodies carry no denied name (reference check).
#[test]
fn mutated_bodies() {
    const INSERTS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\\u0000",
        b"\\ud800",
        b"\\u005f",
        b"\xef\xbb\xbf",
        b"\xff",
        b"1e400",
        b"\"password\":1,",
        b"\"a\":1,\"a\":2,",
        b"  ",
        b"\0",
        b"\xe2\x80\x8b",
        b"amt_",
        b"/*",
        b"null",
    ];
    let config = InspectConfig::default();
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse().ok());
    let mut rng = Rng(env("MCP_MUTATION_SEED").unwrap_or(7));
    let default_rounds = if cfg!(target_arch = "wasm32") {
        4_000
    } else {
        20_000
    };
    let rounds: usize = env("MCP_MUTATION_ROUNDS").map_or(default_rounds, |r| r as usize);
    let mut accepted = 0;
    for _ in 0..rounds {
        let case = rng.pick(CASES);
        let mut body = case.body.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(body.len() as u64 + 1) as usize;
            match rng.below(4) {
                0 if at < body.len() => {
                    body.remove(at);
                }
                1 if at < body.len() => body[at] = rng.next() as u8,
                2 => body.truncate(at),
                _ => {
                    let insert = *rng.pick(INSERTS);
                    body.splice(at..at, insert.iter().copied());
                }
            }
        }
        let verdict = inspect_body(&body, &config);
        if let Verdict::Reject(r) = &verdict {
            serde_json::from_str::<serde_json::Value>(&r.body()).unwrap();
            continue;
        }
        accepted += 1;
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "accepted but serde_json refuses ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        let messages = match &parsed {
            serde_json::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for message in messages {
            if message["method"] == "tools/call" {
                let mut keys = Vec::new();
                collect_keys(&message["params"]["arguments"], &mut keys, 0);
                for key in keys {
                    assert_eq!(
                        reference_denies(&key),
                        None,
                        "{key:?} in {:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
        }
    }
    println!("mutations: {accepted} of {rounds} accepted");
    assert!(accepted > rounds / 50, "{accepted}");
}

/// Every phrase of the default deny list as an argument name (snake_case and camelCase), with the
/// rule it must report. Pinned one by one: a phrase dropped from `names.rs` fails here.
const PINNED_DENY: &[(&str, &str, &str)] = &[
    ("password", "password", "password"),
    ("passwords", "passwords", "password"),
    ("passwd", "passwd", "passwd"),
    ("pwd", "pwd", "pwd"),
    ("passphrase", "passphrase", "passphrase"),
    ("passphrases", "passphrases", "passphrase"),
    ("secret", "secret", "secret"),
    ("secrets", "secrets", "secret"),
    ("client_secret", "clientSecret", "client_secret"),
    ("client_secrets", "clientSecrets", "client_secret"),
    ("api_key", "apiKey", "api_key"),
    ("api_keys", "apiKeys", "api_key"),
    ("apikey", "apikey", "api_key"),
    ("apikeys", "apikeys", "api_key"),
    ("access_key", "accessKey", "access_key"),
    ("access_keys", "accessKeys", "access_key"),
    ("secret_key", "secretKey", "secret_key"),
    ("secret_keys", "secretKeys", "secret_key"),
    ("private_key", "privateKey", "private_key"),
    ("private_keys", "privateKeys", "private_key"),
    ("access_token", "accessToken", "access_token"),
    ("access_tokens", "accessTokens", "access_token"),
    ("refresh_token", "refreshToken", "refresh_token"),
    ("refresh_tokens", "refreshTokens", "refresh_token"),
    ("auth_token", "authToken", "auth_token"),
    ("auth_tokens", "authTokens", "auth_token"),
    ("auth", "auth", "auth"),
    ("bearer", "bearer", "bearer"),
    ("id_token", "idToken", "id_token"),
    ("id_tokens", "idTokens", "id_token"),
    ("session_token", "sessionToken", "session_token"),
    ("session_tokens", "sessionTokens", "session_token"),
    ("token", "token", "token"),
    ("credential", "credential", "credential"),
    ("credentials", "credentials", "credentials"),
    ("authorization", "authorization", "authorization"),
    ("authentication", "authentication", "authentication"),
    ("cookie", "cookie", "cookie"),
    ("cookies", "cookies", "cookie"),
    ("set_cookie", "setCookie", "set_cookie"),
    ("connection_string", "connectionString", "connection_string"),
    ("dsn", "dsn", "dsn"),
    ("pass", "pass", "password"),
    ("creds", "creds", "credentials"),
    ("pat", "pat", "pat"),
    ("passcode", "passcode", "passcode"),
    ("passcodes", "passcodes", "passcode"),
    ("jwt", "jwt", "jwt"),
    ("jwts", "jwts", "jwt"),
    ("otp", "otp", "otp"),
    ("mnemonic", "mnemonic", "mnemonic"),
    ("seed_phrase", "seedPhrase", "seed_phrase"),
    ("recovery_phrase", "recoveryPhrase", "recovery_phrase"),
    ("priv_key", "privKey", "private_key"),
    ("privkey", "privkey", "private_key"),
    ("ssh_key", "sshKey", "ssh_key"),
    ("ssh_keys", "sshKeys", "ssh_key"),
    ("signing_key", "signingKey", "signing_key"),
    ("encryption_key", "encryptionKey", "encryption_key"),
    ("decryption_key", "decryptionKey", "decryption_key"),
    ("master_key", "masterKey", "master_key"),
    ("deploy_key", "deployKey", "deploy_key"),
    ("client_key", "clientKey", "client_key"),
    ("app_key", "appKey", "app_key"),
    ("application_key", "applicationKey", "application_key"),
    ("auth_key", "authKey", "auth_key"),
    ("service_key", "serviceKey", "service_key"),
    ("account_key", "accountKey", "account_key"),
    ("db_key", "dbKey", "db_key"),
    ("database_key", "databaseKey", "database_key"),
    ("write_key", "writeKey", "write_key"),
    ("read_key", "readKey", "read_key"),
    ("delete_key", "deleteKey", "delete_key"),
    ("admin_key", "adminKey", "admin_key"),
    ("publish_key", "publishKey", "publish_key"),
];

/// Every phrase of the default allow list as an argument name: each must pass alone.
const PINNED_ALLOW: &[&str] = &[
    "max_tokens",
    "max_output_tokens",
    "max_completion_tokens",
    "token_count",
    "num_tokens",
    "total_tokens",
    "tokenizer",
    "page_token",
    "next_page_token",
    "continuation_token",
    "cursor",
    "next_cursor",
    "progress_token",
    "key_id",
    "key_name",
    "public_key",
    "primary_key",
    "partition_key",
    "sort_key",
    "idempotency_key",
    "cache_key",
    "secret_name",
    "secret_id",
    "secret_ref",
    "credential_id",
    "api_version",
    "api_url",
    "access_level",
    "password_policy",
    "password_min_length",
    "oauth",
    "secret_type",
    "secret_types",
    "private_key_path",
    "bearer_only",
    "auth_required",
    "authorization_settings",
    "authorization_services",
    "credential_type",
    "credential_types",
    "authentication_flow",
];

#[test]
fn every_default_deny_phrase_is_denied_with_its_rule() {
    let policy = NamePolicy::default();
    for (snake, camel, rule) in PINNED_DENY {
        for name in [
            *snake,
            *camel,
            &snake.to_uppercase(),
            &snake.replace('_', "-"),
        ] {
            assert_eq!(policy.check(name).map(|m| m.rule), Some(*rule), "{name}");
        }
        assert!(reference_denies(snake).is_some(), "reference: {snake}");
    }
    assert_eq!(
        PINNED_DENY.len(),
        DEFAULT_DENY.len(),
        "a deny phrase is not pinned"
    );
}

#[test]
fn every_default_allow_phrase_passes() {
    let policy = NamePolicy::default();
    for name in PINNED_ALLOW {
        assert_eq!(policy.check(name), None, "{name}");
        assert_eq!(reference_denies(name), None, "reference: {name}");
    }
    assert_eq!(
        PINNED_ALLOW.len(),
        DEFAULT_ALLOW.len(),
        "an allow phrase is not pinned"
    );
}

/// The reference judges with docs/body-policy.md's lists, the policy with its own: they must be the same.
#[test]
fn the_reference_lists_are_the_policy_lists() {
    use super::reference::{ALLOW, DENY};
    let mut ours: Vec<&str> = DEFAULT_DENY.iter().map(|(p, _)| *p).collect();
    let mut reference: Vec<&str> = DENY.to_vec();
    ours.sort_unstable();
    reference.sort_unstable();
    assert_eq!(ours, reference);
    let mut ours = DEFAULT_ALLOW.to_vec();
    let mut reference = ALLOW.to_vec();
    ours.sort_unstable();
    reference.sort_unstable();
    assert_eq!(ours, reference);
}

/// Every credential format, in a tool argument value, in text, in JSON inside a string two levels
/// deep, behind JSON escapes and outside arguments: refused with its own rule, value never shown.
#[test]
fn credential_formats_in_values_are_refused_with_their_rule() {
    use super::formats::tests::samples;
    let config = InspectConfig::default();
    for (format, sample) in samples() {
        let escaped: String = sample
            .chars()
            .map(|c| match c {
                '\n' => "\\n".to_string(),
                'g' | 'A' | '-' => format!("\\u{:04x}", c as u32),
                c => c.to_string(),
            })
            .collect();
        let plain = sample.replace('\n', "\\n");
        let inner = format!("{{\\\"k\\\":\\\"{plain}\\\"}}");
        let bodies = [
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"deploy","arguments":{{"value":"{plain}"}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"deploy","arguments":{{"text":"use {plain} here"}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"deploy","arguments":{{"payload":"{{\"outer\":\"{inner}\"}}"}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"deploy","arguments":{{"content":"{escaped}"}}}}}}"#
            ),
            format!(
                r#"{{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{{"name":"p","arguments":{{"q":"{plain}"}}}}}}"#
            ),
            // In a string that starts like JSON but is not strict JSON (a trailing comma), with
            // the format behind two levels of escapes.
            format!(
                r#"{{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{{"name":"deploy","arguments":{{"cfg":"{{\"a\":\"{}\",}}"}}}}}}"#,
                escaped.replace('\\', "\\\\")
            ),
        ];
        let mut bodies = bodies.to_vec();
        if !sample.contains('\n') {
            // As an object key (a key cannot hold a line break: that is refused by the parser).
            bodies.push(format!(
                r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"deploy","arguments":{{"{plain}":1}}}}}}"#
            ));
        }
        for body in &bodies {
            match inspect_body(body.as_bytes(), &config) {
                Verdict::Reject(r) => {
                    assert_eq!(r.rule, format.rule(), "{body}");
                    assert_eq!(r.code, INVALID_PARAMS);
                    assert!(
                        !r.body().contains(&plain[..plain.len().min(16)]),
                        "{}",
                        r.body()
                    );
                }
                Verdict::Allow => panic!("{} not found in {body}", format.rule()),
            }
        }
    }
}

#[test]
fn an_audited_format_is_forwarded_and_noted_and_an_off_one_ignored() {
    use super::formats::tests::samples;
    use super::formats::{Format, FormatAction};
    let samples = samples();
    let sample = |f: Format| samples.iter().find(|(g, _)| *g == f).unwrap().1.clone();
    let mut config = InspectConfig::default();
    config.formats.set(Format::Jwt, FormatAction::Audit);
    config.formats.set(Format::NpmToken, FormatAction::Off);
    let body = |value: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"d","arguments":{{"a":"{value}"}}}}}}"#
        )
    };
    let mut noted = Vec::new();
    let jwt = body(&sample(Format::Jwt));
    let verdict =
        inspect_request_noting(jwt.as_bytes(), &McpHeaders::default(), &config, &mut noted);
    assert!(verdict.is_allow(), "{verdict:?}");
    assert_eq!(noted, vec![Format::Jwt]);
    // An audited format does not hide an enforced one after it in the same string.
    let both = body(&format!(
        "{} {}",
        sample(Format::Jwt),
        sample(Format::GithubToken)
    ));
    let verdict =
        inspect_request_noting(both.as_bytes(), &McpHeaders::default(), &config, &mut noted);
    assert_eq!(
        verdict.rejection().map(|r| r.rule.as_str()),
        Some("github_token")
    );
    let npm = body(&sample(Format::NpmToken));
    assert!(inspect_body(npm.as_bytes(), &config).is_allow());
}

/// An `amt_` token encoded the ways a server might decode a value: percent-encoded in a URL,
/// base64 (a Basic credential, a blob), with its `_` escaped.
#[test]
fn encoded_tokens_in_values_are_refused() {
    use crate::auth::smuggled::tests::base64;
    let token = tok!();
    let config = InspectConfig::default();
    for value in [
        format!(
            "https://api.example.com/cb?key={}",
            token.replace('_', "%5F")
        ),
        format!(
            "Basic {}",
            base64(format!("user:{token}").as_bytes(), false, true)
        ),
        base64(format!("{{\"k\":\"{token}\"}}").as_bytes(), true, false),
        token.replace('_', "%255F"),
        // base64 broken into lines by a JSON encoder, and a second layer of escapes.
        base64(format!("user:{token}").as_bytes(), false, true)
            .as_bytes()
            .chunks(16)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\\n"),
        token.replace('_', "\\\\u005f"),
        token.replace('_', "\\\\137"),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"d","arguments":{{"url":"{value}"}}}}}}"#
        );
        let verdict = inspect_body(body.as_bytes(), &config);
        assert_eq!(
            verdict.rejection().map(|r| r.rule.as_str()),
            Some(RULE_AMT_TOKEN),
            "{value}"
        );
    }
}
