//! The JSON-RPC / MCP body policy: what a buffered request body must look like to be forwarded.
//!
//! # Order of checks
//!
//! 1. Strict JSON ([`super::json`]): any error is a `-32700` parse error whose rule is the
//!    parser's code (`duplicate_key`, `case_fold_collision`, `bom`, ...).
//! 2. JSON-RPC 2.0 shape (`-32600`, rule `invalid_message` / `empty_batch` /
//!    `noncanonical_member`). The body is one message object or a non-empty array of them (a
//!    batch); every element is inspected and one bad element rejects the whole batch. Each message
//!    has `"jsonrpc": "2.0"` and is either
//!    - a request or notification: `method` a string, `id` (if present) a string, number or null,
//!      `params` (if present) an object or array, no `result`/`error`; or
//!    - a response (clients answer server requests such as sampling and elicitation this way):
//!      no `method`, an `id` (string, number or null), and exactly one of `result` and `error`
//!      (`error` an object).
//!
//!    Other members are allowed (and inspected). A member whose name case-folds to one of
//!    `jsonrpc id method params result error` but is spelled differently (`"Params"`, `"ID"`,
//!    `"pa\u017Fams"`) is refused: a case-insensitive decoder upstream would bind it.
//! 3. `Mcp-Method` / `Mcp-Name` headers, when present, must equal the body (`-32020`
//!    HeaderMismatch, the code MCP defines for it; rule `header_mismatch`). See [`McpHeaders`].
//! 4. `tools/call`: `params` an object, `params.name` a string, `params.arguments` an object or
//!    absent (`null` is refused), and `name`, `arguments`, `_meta` spelled exactly (`-32602`, rule
//!    `invalid_tool_call` / `noncanonical_member`).
//! 5. Secrets (`-32602`), in document order, over the whole message:
//!    - every key inside `params.arguments` of a `tools/call`, and inside the other members the
//!      client writes (`client_data`: `inputResponses`, `_meta`, `prompts/get` arguments,
//!      `completion/complete` context, a client's `result`), at any depth, objects inside arrays
//!      too, is checked with the [`NamePolicy`]: rule = the deny phrase's rule; so is the
//!      `params.argument.name` of a `completion/complete` (its `value` is that argument's);
//!    - every string, key or value, anywhere in the message, is scanned for a token of our own
//!      grammar after unescaping: rule `amt_token_value`;
//!    - a string whose decoded text starts (after JSON whitespace) with `{`, `[` or `"` is parsed
//!      as JSON with the same strict parser and inspected with the same rules (keys are
//!      name-checked when the string is inside `arguments`), up to
//!      [`InspectConfig::max_embedded_depth`] levels of JSON-in-a-string. A string that starts
//!      with `{` or `[` but does not parse strictly, or is nested deeper than that, gets a loose
//!      scan instead: every quoted or bare word directly before a `:` is name-checked, and the
//!      text with backslash escapes loosely removed is scanned for tokens. Strings starting
//!      with `"` that do not parse are left alone (plain text).
//!
//! Members of `params` that fold to one of the names above but are spelled differently are refused
//! (`noncanonical_member`) for every method.
//!
//! # Replies
//!
//! A [`Rejection`] is always HTTP 400 with a JSON-RPC error ([`Rejection::body`]). The request
//! `id` is echoed for a single message when it is a string or number of at most 128 bytes that
//! holds no token; batches and parse errors get `null`. Messages and paths never hold a value:
//! paths are made of key names and indexes, printable ASCII only (other characters `\uXXXX`),
//! each key cut at 64 characters, the whole path at 256 bytes; a key holding a token shows as
//! `[?]`.

use std::borrow::Cow;
use std::ops::Range;

use crate::auth::smuggled::{holds_encoded_token, holds_token};

use super::formats::{find_format_from, Format, FormatAction, FormatPolicy, MIN_FORMAT_LEN};
use super::json::{self, same_bytes, Document, JsonStr, Kind, ParseOptions, Value};
use super::names::is_container_rule;
use super::names::{NamePolicy, NameScratch};
use crate::text::{fold_str_into, json_escape_into};
use mcp_guard_protocol::token::{contains_token, MIN_TOKEN_LEN};

pub const HTTP_BAD_REQUEST: u16 = 400;
/// A call the key's role may not make (tool policy).
pub const HTTP_FORBIDDEN: u16 = 403;
/// JSON-RPC error code of a call the tool policy forbids (server-defined range).
pub const FORBIDDEN: i32 = -32003;
/// JSON-RPC: invalid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC: not a valid request object.
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC: invalid method parameters (secrets in arguments).
pub const INVALID_PARAMS: i32 = -32602;
/// MCP (2026-07-28, SEP-2243) HeaderMismatch: `Mcp-*` headers disagree with the body.
pub const HEADER_MISMATCH: i32 = -32020;

/// Rule of a token found in a value (or key).
pub const RULE_AMT_TOKEN: &str = "amt_token_value";
pub const RULE_INVALID_MESSAGE: &str = "invalid_message";
pub const RULE_EMPTY_BATCH: &str = "empty_batch";
pub const RULE_NONCANONICAL_MEMBER: &str = "noncanonical_member";
pub const RULE_INVALID_TOOL_CALL: &str = "invalid_tool_call";
pub const RULE_HEADER_MISMATCH: &str = "header_mismatch";

/// Default levels of JSON-in-a-string parsed strictly.
pub const DEFAULT_MAX_EMBEDDED_DEPTH: usize = 2;

const MAX_ID_ECHO: usize = 128;
const MAX_PATH: usize = 256;
const MAX_SEGMENT_CHARS: usize = 64;
const MAX_TOOL_CHARS: usize = 64;
const MAX_HEADER_VALUE: usize = 8 * 1024;

const MESSAGE_MEMBERS_ARRAY: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
const MESSAGE_MEMBERS: &[&str] = &MESSAGE_MEMBERS_ARRAY;
const TOOL_CALL_MEMBERS: &[&str] = &[
    "name",
    "arguments",
    "_meta",
    "inputResponses",
    "requestState",
];
/// `params` members of every request whose contents the client writes (see [`client_data`]):
/// spelled any other way they would escape the name policy, yet bind in a lenient decoder.
const PARAMS_MEMBERS: &[&str] = &[
    "name",
    "arguments",
    "_meta",
    "inputResponses",
    "requestState",
    "argument",
    "context",
    "uri",
];

/// Inspector settings, built once per plugin configuration.
#[derive(Debug, Clone)]
pub struct InspectConfig {
    /// Maximum nesting of arrays/objects in the body (and in each JSON-in-a-string).
    pub max_depth: usize,
    /// Levels of JSON-in-a-string parsed strictly (deeper ones get the loose scan).
    pub max_embedded_depth: usize,
    pub names: NamePolicy,
    /// Credential formats looked for in string values, and what each does.
    pub formats: FormatPolicy,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            max_depth: json::DEFAULT_MAX_DEPTH,
            max_embedded_depth: DEFAULT_MAX_EMBEDDED_DEPTH,
            names: NamePolicy::default(),
            formats: FormatPolicy::default(),
        }
    }
}

/// The values of the `Mcp-Method` and `Mcp-Name` request headers (every occurrence; empty when
/// absent). More than one value of either is a mismatch. Values may use the SEP-2243
/// `=?base64?<standard base64 of UTF-8>?=` form (markers case-sensitive). `Mcp-Name` is compared
/// with `params.name` for `tools/call` and `prompts/get`, with `params.uri` for
/// `resources/read`, `resources/subscribe` and `resources/unsubscribe`, and for other methods
/// with `params.name` or else `params.uri`; a header with nothing to match in the body is a
/// mismatch, and so is any `Mcp-*` header on a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct McpHeaders<'a> {
    pub method: &'a [&'a str],
    pub name: &'a [&'a str],
}

/// Which family of check refused the request (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// Not strict JSON.
    Parse,
    /// Not a valid JSON-RPC / MCP message.
    Shape,
    /// `Mcp-Method` / `Mcp-Name` disagree with the body.
    HeaderMismatch,
    /// An argument (or `Mcp-Param-*` header) named like a credential.
    SecretName,
    /// A value holding one of our tokens.
    SecretValue,
    /// A method or tool the key's role may not use (HTTP 403).
    Forbidden,
}

/// Says, for every request message of a body, whether its method (and, for `tools/call`, its
/// tool) may be called. The filter's gate asks the org's tool policy; [`OpenGate`] admits all.
pub trait CallGate {
    /// `Err` refuses the whole body with 403. Called before the message's secrets are scanned.
    fn admit(&mut self, method: &str, tool: Option<&str>) -> Result<(), Forbidden>;
}

/// Why a call is forbidden: the reason code and a client-safe message naming the tool (or
/// method) and the role, never an argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub rule: &'static str,
    pub message: String,
}

/// Admits every call (no tool policy).
pub struct OpenGate;

impl CallGate for OpenGate {
    fn admit(&mut self, _method: &str, _tool: Option<&str>) -> Result<(), Forbidden> {
        Ok(())
    }
}

/// Why a request is refused, ready to log (key-id comes from the caller) and to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    /// Always 400.
    pub status: u16,
    /// JSON-RPC error code.
    pub code: i32,
    /// The request id as JSON text to echo (`None`: `null`).
    pub id: Option<String>,
    /// Client-safe message: names the path, never a value.
    pub message: String,
    /// Where: `arguments.config.api_key`, `[1].arguments.items[2].password`, `params._meta.x`,
    /// `arguments.payload(json).password`; empty for whole-body problems.
    pub path: String,
    /// The rule: a name rule (`password`, `api_key`, ...), `amt_token_value`, a JSON error code,
    /// or one of the `RULE_*` constants.
    pub rule: String,
    /// Sanitised `params.name` of a `tools/call`, when known.
    pub tool: Option<String>,
}

/// The decision on a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Reject(Rejection),
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        matches!(self, Verdict::Allow)
    }

    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Verdict::Allow => None,
            Verdict::Reject(r) => Some(r),
        }
    }
}

impl Rejection {
    /// The JSON-RPC 2.0 error response:
    /// `{"jsonrpc":"2.0","id":<id>,"error":{"code":..,"message":..,"data":{"path":..,"rule":..}}}`.
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(160 + self.message.len() + self.path.len());
        out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
        out.push_str(self.id.as_deref().unwrap_or("null"));
        out.push_str(",\"error\":{\"code\":");
        out.push_str(&self.code.to_string());
        out.push_str(",\"message\":\"");
        json_escape_into(&self.message, &mut out);
        out.push_str("\",\"data\":{\"path\":\"");
        json_escape_into(&self.path, &mut out);
        out.push_str("\",\"rule\":\"");
        json_escape_into(&self.rule, &mut out);
        out.push_str("\"}}}");
        out
    }
}

/// Inspects a complete request body without `Mcp-*` headers.
pub fn inspect_body(body: &[u8], config: &InspectConfig) -> Verdict {
    inspect_request(body, &McpHeaders::default(), config)
}

/// Inspects a complete request body and the `Mcp-Method` / `Mcp-Name` header values.
pub fn inspect_request(body: &[u8], headers: &McpHeaders<'_>, config: &InspectConfig) -> Verdict {
    inspect_request_noting(body, headers, config, &mut Vec::new())
}

/// [`inspect_request`], also noting in `audited` the formats in audit mode that the body holds
/// (each once): the body is forwarded for them, and the caller counts and logs them.
pub fn inspect_request_noting(
    body: &[u8],
    headers: &McpHeaders<'_>,
    config: &InspectConfig,
    audited: &mut Vec<Format>,
) -> Verdict {
    inspect_request_gated(body, headers, config, audited, &mut OpenGate)
}

/// [`inspect_request_noting`] that also asks `gate` about every request message.
pub fn inspect_request_gated(
    body: &[u8],
    headers: &McpHeaders<'_>,
    config: &InspectConfig,
    audited: &mut Vec<Format>,
    gate: &mut dyn CallGate,
) -> Verdict {
    let options = ParseOptions {
        max_depth: config.max_depth,
    };
    let mut inspector = Inspector::new(config, options, gate);
    let verdict = match json::parse_with(body, &options, &mut inspector.ws.buffers) {
        Ok(doc) => {
            let verdict = inspector.document(&doc, headers);
            inspector.ws.buffers.recycle(doc);
            verdict
        }
        Err(e) => Verdict::Reject(Rejection {
            kind: RejectKind::Parse,
            status: HTTP_BAD_REQUEST,
            code: PARSE_ERROR,
            id: None,
            message: format!(
                "Request body rejected: not strict JSON ({} at byte {})",
                e.code(),
                e.offset
            ),
            path: String::new(),
            rule: e.code().to_string(),
            tool: None,
        }),
    };
    audited.append(&mut inspector.audited);
    inspector.ws.give_back();
    verdict
}

/// Applies the name policy to an `Mcp-Param-<Name>` header name (prefix case-insensitive). Other
/// header names are allowed.
pub fn check_param_header_name(header_name: &str, config: &InspectConfig) -> Verdict {
    check_param_header(header_name, "", config)
}

/// [`check_param_header_name`], plus a token scan of the value (after SEP-2243 base64 decoding).
pub fn check_param_header(header_name: &str, value: &str, config: &InspectConfig) -> Verdict {
    const PREFIX: &str = "mcp-param-";
    let is_param = header_name
        .get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
    if !is_param {
        return Verdict::Allow;
    }
    let name = header_name.get(PREFIX.len()..).unwrap_or_default();
    let token_in_name = contains_token(header_name.as_bytes());
    let mut path = String::from("header:");
    if token_in_name {
        path.push_str("mcp-param-[?]");
    } else {
        push_sanitized(header_name, MAX_SEGMENT_CHARS + PREFIX.len(), &mut path);
    }
    if let Some(m) = config.names.check(name).filter(|_| !token_in_name) {
        return Verdict::Reject(Rejection {
            kind: RejectKind::SecretName,
            status: HTTP_BAD_REQUEST,
            code: INVALID_PARAMS,
            id: None,
            message: format!(
                "Header `{path}` looks like a credential (rule {}): send credentials only in the \
                 Authorization header",
                m.rule
            ),
            path,
            rule: m.rule.to_string(),
            tool: None,
        });
    }
    let decoded = decode_header_value(value);
    let has_token = token_in_name
        || contains_token(value.as_bytes())
        || decoded
            .as_deref()
            .is_some_and(|d| contains_token(d.as_bytes()));
    if has_token {
        return Verdict::Reject(Rejection {
            kind: RejectKind::SecretValue,
            status: HTTP_BAD_REQUEST,
            code: INVALID_PARAMS,
            id: None,
            message: format!(
                "Header `{path}` holds an API key (rule {RULE_AMT_TOKEN}): send credentials only \
                 in the Authorization header"
            ),
            path,
            rule: RULE_AMT_TOKEN.to_string(),
            tool: None,
        });
    }
    Verdict::Allow
}

fn shape_reject(id: Option<String>, path: &str, rule: &str, detail: &str) -> Verdict {
    Verdict::Reject(shape_rejection(
        id,
        path,
        rule,
        detail,
        INVALID_REQUEST,
        None,
    ))
}

fn shape_rejection(
    id: Option<String>,
    path: &str,
    rule: &str,
    detail: &str,
    code: i32,
    tool: Option<String>,
) -> Rejection {
    let message = if path.is_empty() {
        format!("Invalid request: {detail}")
    } else {
        format!("Invalid request at `{path}`: {detail}")
    };
    Rejection {
        kind: RejectKind::Shape,
        status: HTTP_BAD_REQUEST,
        code,
        id,
        message,
        path: path.to_string(),
        rule: rule.to_string(),
        tool,
    }
}

fn header_reject(id: Option<String>, detail: &str) -> Rejection {
    Rejection {
        kind: RejectKind::HeaderMismatch,
        status: HTTP_BAD_REQUEST,
        code: HEADER_MISMATCH,
        id,
        message: format!("Header mismatch: {detail}"),
        path: String::new(),
        rule: RULE_HEADER_MISMATCH.to_string(),
        tool: None,
    }
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    /// The parsed contents of a JSON-in-a-string.
    Json,
    /// A key that must not be shown.
    Redacted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaf {
    Name(String),
    Token,
    Format(Format),
}

/// A secret found below some node: the path from that node down, and what was found.
#[derive(Debug)]
struct Finding {
    segs: Vec<Seg>,
    leaf: Leaf,
    /// The node itself is a key holding a token: show it as `[?]`.
    redact_key: bool,
}

struct Inspector<'c> {
    config: &'c InspectConfig,
    gate: &'c mut dyn CallGate,
    options: ParseOptions,
    ws: Workspace,
    /// Formats in audit mode seen in the body (forwarded, counted and logged by the caller).
    audited: Vec<Format>,
}

/// Working memory of the inspector, kept from one body to the next (per thread: a proxy-wasm VM
/// judges one body at a time), so that judging a body allocates almost nothing once the buffers
/// have grown. Buffers that grew past [`WORKSPACE_MAX_BYTES`] are dropped after the body. The
/// name verdicts are kept too while the policy stays the same ([`NamePolicy::id`]): clients send
/// the same argument names again and again.
#[derive(Default)]
struct Workspace {
    scratch: NameScratch,
    buffers: json::ParseBuffers,
    /// Decoded JSON-in-a-string texts, one buffer per level.
    decoded: Vec<String>,
    /// Name verdicts of policy `policy`: bodies repeat the same keys in every element of an
    /// array, and requests repeat them too. Direct-mapped, `NAME_CACHE_SLOTS` entries; an entry
    /// is valid only when its generation is the current one. The key text is compared, not only
    /// hashed.
    cache: Vec<CacheEntry>,
    /// The raw text of the cached keys, back to back.
    cache_text: String,
    /// Current generation (never 0 while judging: 0 marks an empty entry).
    generation: u32,
    /// [`NamePolicy::id`] of the cached verdicts (0: none).
    policy: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct CacheEntry {
    generation: u32,
    /// The parser's hash of the key.
    hash: u32,
    /// Offset and length of the raw key in `cache_text`.
    at: u32,
    len: u32,
    /// The deny phrase's index ([`NamePolicy::rule`]); `u32::MAX` when the name is allowed.
    rule: u32,
}

const NAME_CACHE_SLOTS: usize = 128;
const NAME_CACHE_MAX_KEY: usize = 64;
const NAME_CACHE_MAX_TEXT: usize = 16 * 1024;
/// Largest buffer kept between bodies.
const WORKSPACE_MAX_BYTES: usize = 512 * 1024;
const NO_RULE: u32 = u32::MAX;

thread_local! {
    static WORKSPACE: core::cell::Cell<Option<Workspace>> = const { core::cell::Cell::new(None) };
}

impl Workspace {
    /// The workspace of this thread (a fresh one if it is in use), ready for a body judged with
    /// `names`.
    fn take(names: &NamePolicy) -> Self {
        let mut ws = WORKSPACE.with(|w| w.take()).unwrap_or_default();
        // Another policy's verdicts, or a text buffer half full of keys seen so far: start over.
        if ws.policy != names.id() || ws.cache_text.len() > NAME_CACHE_MAX_TEXT / 2 {
            ws.policy = names.id();
            ws.cache_text.clear();
            ws.generation = ws.generation.wrapping_add(1);
            if ws.generation == 0 {
                ws.cache.iter_mut().for_each(|e| *e = CacheEntry::default());
                ws.generation = 1;
            }
        }
        ws
    }

    /// Gives the workspace back for the next body, without its oversized buffers.
    fn give_back(mut self) {
        self.buffers.trim(WORKSPACE_MAX_BYTES);
        self.scratch.trim(WORKSPACE_MAX_BYTES);
        for d in &mut self.decoded {
            if d.capacity() > WORKSPACE_MAX_BYTES {
                *d = String::new();
            }
        }
        WORKSPACE.with(|w| w.set(Some(self)));
    }
}

impl<'c> Inspector<'c> {
    fn new(config: &'c InspectConfig, options: ParseOptions, gate: &'c mut dyn CallGate) -> Self {
        Inspector {
            config,
            gate,
            options,
            ws: Workspace::take(&config.names),
            audited: Vec::new(),
        }
    }

    /// The name policy's verdict on a key (the rule when it is denied), cached by raw text: the
    /// verdict is a function of the decoded key, itself a function of the raw text. `hash` is the
    /// parser's hash of the key (a function of the raw text).
    fn check_key(&mut self, key: JsonStr<'_>, hash: u32) -> Option<&'c str> {
        let raw = key.raw();
        if raw.len() > NAME_CACHE_MAX_KEY {
            return self.check_name(&key.decode());
        }
        if self.ws.cache.len() != NAME_CACHE_SLOTS {
            self.ws.cache = vec![CacheEntry::default(); NAME_CACHE_SLOTS];
        }
        let generation = self.ws.generation;
        let slot = (hash as usize) % NAME_CACHE_SLOTS;
        if let Some(e) = self.ws.cache.get(slot) {
            if e.generation == generation && e.hash == hash && e.len as usize == raw.len() {
                let cached = self
                    .ws
                    .cache_text
                    .as_bytes()
                    .get(e.at as usize..(e.at as usize + e.len as usize));
                if cached.is_some_and(|c| same_bytes(c, raw.as_bytes())) {
                    return self.config.names.rule(e.rule as usize);
                }
            }
        }
        let found = self
            .config
            .names
            .check_index_with(&key.decode(), &mut self.ws.scratch);
        let rule = match found {
            None => Some(NO_RULE),
            Some(i) => u32::try_from(i).ok().filter(|&r| r != NO_RULE),
        };
        let fits = self.ws.cache_text.len() + raw.len() <= NAME_CACHE_MAX_TEXT;
        if let (Some(rule), true) = (rule, fits) {
            let at = self.ws.cache_text.len() as u32;
            self.ws.cache_text.push_str(raw);
            if let Some(e) = self.ws.cache.get_mut(slot) {
                *e = CacheEntry {
                    generation,
                    hash,
                    at,
                    len: raw.len() as u32,
                    rule,
                };
            }
        }
        found.and_then(|i| self.config.names.rule(i))
    }

    #[inline]
    fn check_name(&mut self, name: &str) -> Option<&'c str> {
        self.config
            .names
            .check_with(name, &mut self.ws.scratch)
            .map(|m| m.rule)
    }
}

impl<'c> Inspector<'c> {
    /// Judges a parsed body: one message or a batch.
    fn document(&mut self, doc: &Document<'_>, headers: &McpHeaders<'_>) -> Verdict {
        let root = doc.root();
        match root.kind() {
            Kind::Array => {
                if root.is_empty() {
                    return shape_reject(None, "", RULE_EMPTY_BATCH, "an empty batch is invalid");
                }
                if !headers.method.is_empty() || !headers.name.is_empty() {
                    return Verdict::Reject(header_reject(
                        None,
                        "Mcp-Method/Mcp-Name headers cannot describe a batch",
                    ));
                }
                for (i, element) in root.items().enumerate() {
                    if let Err(r) = self.message(element, Some(i), headers) {
                        return Verdict::Reject(*r);
                    }
                }
                Verdict::Allow
            }
            _ => match self.message(root, None, headers) {
                Ok(()) => Verdict::Allow,
                Err(r) => Verdict::Reject(*r),
            },
        }
    }

    fn message(
        &mut self,
        msg: Value<'_, '_>,
        batch: Option<usize>,
        headers: &McpHeaders<'_>,
    ) -> Result<(), Box<Rejection>> {
        let prefix = batch.map(|i| format!("[{i}]")).unwrap_or_default();
        let shape = |rule: &str, detail: &str, path: &str| {
            shape_rejection(None, path, rule, detail, INVALID_REQUEST, None)
        };
        if msg.kind() != Kind::Object {
            return Err(Box::new(shape(
                RULE_INVALID_MESSAGE,
                "a JSON-RPC message must be an object",
                &prefix,
            )));
        }
        if let Some(key) = noncanonical_member(msg, MESSAGE_MEMBERS) {
            let path = render_path(&prefix, &[Seg::Key(key)]);
            return Err(Box::new(shape(
                RULE_NONCANONICAL_MEMBER,
                "JSON-RPC member names must be spelled exactly",
                &path,
            )));
        }
        let [jsonrpc, id_member, method, params, result, error] =
            msg.members(MESSAGE_MEMBERS_ARRAY);
        let id = if batch.is_none() {
            echo_id(id_member)
        } else {
            None
        };
        let shape_err = |detail: &str| {
            shape_rejection(
                id.clone(),
                &prefix,
                RULE_INVALID_MESSAGE,
                detail,
                INVALID_REQUEST,
                None,
            )
        };
        if !jsonrpc
            .and_then(|v| v.as_str())
            .is_some_and(|s| s.eq_str("2.0"))
        {
            return Err(Box::new(shape_err("\"jsonrpc\" must be \"2.0\"")));
        }
        let id_ok = |v: Option<Value<'_, '_>>| {
            v.is_none_or(|v| matches!(v.kind(), Kind::String | Kind::Number | Kind::Null))
        };
        let method_name = match method {
            Some(m) => {
                let Some(name) = m.as_str() else {
                    return Err(Box::new(shape_err("\"method\" must be a string")));
                };
                if result.is_some() || error.is_some() {
                    return Err(Box::new(shape_err(
                        "a request cannot carry \"result\" or \"error\"",
                    )));
                }
                if !id_ok(id_member) {
                    return Err(Box::new(shape_err(
                        "\"id\" must be a string, a number or null",
                    )));
                }
                if params.is_some_and(|p| !matches!(p.kind(), Kind::Object | Kind::Array)) {
                    return Err(Box::new(shape_err(
                        "\"params\" must be an object or an array",
                    )));
                }
                Some(name.decode())
            }
            None => {
                if result.is_some() == error.is_some() {
                    return Err(Box::new(shape_err(
                        "a message needs a \"method\", or exactly one of \"result\" and \"error\"",
                    )));
                }
                if id_member.is_none() || !id_ok(id_member) {
                    return Err(Box::new(shape_err(
                        "a response needs an \"id\" that is a string, a number or null",
                    )));
                }
                if error.is_some_and(|e| e.kind() != Kind::Object) {
                    return Err(Box::new(shape_err("\"error\" must be an object")));
                }
                None
            }
        };

        if batch.is_none() {
            check_headers(headers, method_name.as_deref(), params)
                .map_err(|detail| Box::new(header_reject(id.clone(), detail)))?;
        }

        if let Some(segs) = misspelt_params_member(method_name.as_deref(), params) {
            return Err(Box::new(shape_rejection(
                id.clone(),
                &render_path(&prefix, &segs),
                RULE_NONCANONICAL_MEMBER,
                "MCP parameter names must be spelled exactly",
                INVALID_REQUEST,
                None,
            )));
        }
        let mut tool = None;
        let mut args: Option<Range<usize>> = None;
        if method_name.as_deref() == Some("tools/call") {
            let params_path = || render_path(&prefix, &[Seg::Key("params".into())]);
            let invalid = |detail: &str, path: &str, tool: Option<String>| {
                shape_rejection(
                    id.clone(),
                    path,
                    RULE_INVALID_TOOL_CALL,
                    detail,
                    INVALID_PARAMS,
                    tool,
                )
            };
            let Some(params) = params.filter(|p| p.kind() == Kind::Object) else {
                return Err(Box::new(invalid(
                    "tools/call needs \"params\" to be an object",
                    &params_path(),
                    None,
                )));
            };
            let [name, arguments] = params.members(["name", "arguments"]);
            let Some(name) = name.and_then(|n| n.as_str()) else {
                return Err(Box::new(invalid(
                    "tools/call needs \"params.name\" to be a string",
                    &params_path(),
                    None,
                )));
            };
            tool = Some(name);
            match arguments {
                None => {}
                Some(a) if a.kind() == Kind::Object => args = Some(a.index()..a.subtree_end()),
                Some(_) => {
                    let path = render_path(&prefix, &[Seg::Key("arguments".into())]);
                    return Err(Box::new(invalid(
                        "\"arguments\" must be an object",
                        &path,
                        Some(sanitize_tool(&name.decode())),
                    )));
                }
            }
        }

        let mut names: Vec<Range<usize>> = args.iter().cloned().collect();
        client_data(method_name.as_deref(), params, result, error, &mut names);
        if method_name.as_deref() == Some("completion/complete") {
            if let Some(rule) = self.completed_argument(params) {
                let path = render_path(
                    &prefix,
                    &[
                        Seg::Key("params".into()),
                        Seg::Key("argument".into()),
                        Seg::Key("value".into()),
                    ],
                );
                return Err(Box::new(Rejection {
                    kind: RejectKind::SecretName,
                    status: HTTP_BAD_REQUEST,
                    code: INVALID_PARAMS,
                    id,
                    message: format!(
                        "Value `{path}` completes an argument that looks like a credential (rule \
                         {rule}): send credentials only in the Authorization header, never in the \
                         request body"
                    ),
                    path,
                    rule: rule.to_string(),
                    tool: None,
                }));
            }
        }

        let range = msg.index()..msg.subtree_end();
        let doc = msg.document();
        if let Some((idx, finding)) = self.scan(doc, range, &names, 1) {
            let mut segs = path_to(msg, idx);
            if finding.redact_key {
                if let Some(last) = segs.last_mut() {
                    *last = Seg::Redacted;
                }
            }
            // Arguments paths start at `arguments`, as the tool sees them.
            let in_args = args.as_ref().is_some_and(|r| r.contains(&idx));
            if in_args && segs.first() == Some(&Seg::Key("params".into())) {
                segs.remove(0);
            }
            segs.extend(finding.segs);
            let path = render_path(&prefix, &segs);
            // Sanitised only now: most requests are allowed.
            let tool = tool.map(|name| sanitize_tool(&name.decode()));
            let tool_part = tool
                .as_deref()
                .map(|t| format!(" of tool `{t}`"))
                .unwrap_or_default();
            let in_names = names.iter().any(|r| r.contains(&idx));
            let (what, where_) = if in_args {
                ("Argument", " in tool arguments")
            } else if in_names {
                ("Field", " in the request body")
            } else {
                ("Value", " in the request body")
            };
            let rejection = match finding.leaf {
                Leaf::Name(rule) => Rejection {
                    kind: RejectKind::SecretName,
                    status: HTTP_BAD_REQUEST,
                    code: INVALID_PARAMS,
                    id,
                    message: format!(
                        "{what} `{path}`{tool_part} looks like a credential (rule {rule}): send \
                         credentials only in the Authorization header, never{where_}"
                    ),
                    path,
                    rule,
                    tool,
                },
                Leaf::Token => Rejection {
                    kind: RejectKind::SecretValue,
                    status: HTTP_BAD_REQUEST,
                    code: INVALID_PARAMS,
                    id,
                    message: format!(
                        "{what} `{path}`{tool_part} holds an API key (rule {RULE_AMT_TOKEN}): \
                         send credentials only in the Authorization header, never{where_}"
                    ),
                    path,
                    rule: RULE_AMT_TOKEN.to_string(),
                    tool,
                },
                Leaf::Format(format) => Rejection {
                    kind: RejectKind::SecretValue,
                    status: HTTP_BAD_REQUEST,
                    code: INVALID_PARAMS,
                    id,
                    message: format!(
                        "{what} `{path}`{tool_part} holds a credential (rule {}): send \
                         credentials only in the Authorization header, never{where_}",
                        format.rule()
                    ),
                    path,
                    rule: format.rule().to_string(),
                    tool,
                },
            };
            return Err(Box::new(rejection));
        }
        // After the secret scan: a tool or method name that holds a credential is refused as
        // such, and never echoed in a 403 or recorded for the access log.
        if let Some(method) = method_name.as_deref() {
            let tool_name = tool.map(|name| name.decode());
            if let Err(forbidden) = self.gate.admit(method, tool_name.as_deref()) {
                return Err(Box::new(Rejection {
                    kind: RejectKind::Forbidden,
                    status: HTTP_FORBIDDEN,
                    code: FORBIDDEN,
                    id,
                    message: forbidden.message,
                    path: prefix,
                    rule: forbidden.rule.to_string(),
                    tool: tool_name.map(|name| sanitize_tool(&name)),
                }));
            }
        }
        Ok(())
    }

    /// Name/value lists (`"headers": [{"name": "X-Api-Key", "value": "..."}]`, environment
    /// lists, key/value settings): an object with a `name` or `key` member whose string is a
    /// secret's name, and a `value` member, holds that secret in its `value`. Returns the
    /// `value`'s tape index. Costs one pass over the object's members.
    fn labelled_value(&mut self, object: Value<'_, '_>) -> Option<(usize, &'c str)> {
        // Most objects have no `value` member: one pass over the raw keys says so (an escaped
        // key is decoded below, the careful way).
        let may_have_value = object
            .entries()
            .any(|(k, _)| k.is_escaped() || matches!(k.raw(), "value" | "Value"));
        if !may_have_value {
            return None;
        }
        let [name, key, cap_name, cap_key, value, cap_value] =
            object.members(["name", "key", "Name", "Key", "value", "Value"]);
        let value = value.or(cap_value)?;
        let label = name.or(key).or(cap_name).or(cap_key)?.as_str()?;
        let rule = self.check_name(&label.decode())?;
        Some((value.index(), rule))
    }

    /// The first enforced credential format in a string value (audited ones are noted and the
    /// scan goes on). Escapes are undone only when the raw text has any.
    fn credential_format(&mut self, s: JsonStr<'_>) -> Option<Format> {
        let policy = &self.config.formats;
        let raw = s.raw();
        if raw.len() < MIN_FORMAT_LEN || policy.all_off() {
            return None;
        }
        let decoded;
        let text = if raw.contains('\\') {
            decoded = s.decode();
            decoded.as_bytes()
        } else {
            raw.as_bytes()
        };
        let mut from = 0;
        while let Some((at, format)) = find_format_from(text, from, policy) {
            if policy.action(format) == FormatAction::Enforce {
                return Some(format);
            }
            if !self.audited.contains(&format) {
                self.audited.push(format);
            }
            // Audited: an enforced format may still follow.
            from = at + 1;
        }
        None
    }

    /// `completion/complete` sends the value a user is typing for `params.argument.name`: when
    /// that name is a secret's, so is the value.
    fn completed_argument(&mut self, params: Option<Value<'_, '_>>) -> Option<&'c str> {
        let argument = params?.get("argument")?;
        let name = argument.get("name")?.as_str()?;
        self.check_name(&name.decode())
    }

    /// Scans tape entries `range` of `doc` in document order. Keys in `names` are name-checked;
    /// every string is token-scanned and, if it looks like JSON, inspected at `level`.
    fn scan(
        &mut self,
        doc: &Document<'_>,
        range: Range<usize>,
        names: &[Range<usize>],
        level: usize,
    ) -> Option<(usize, Finding)> {
        for idx in range {
            let Some((key_hash, s)) = doc.string_node(idx) else {
                // An object the client wrote may be a name/value pair.
                let labelled = doc
                    .value_at(idx)
                    .filter(|v| v.kind() == Kind::Object)
                    .filter(|_| names.iter().any(|r| r.contains(&idx)))
                    .and_then(|object| self.labelled_value(object));
                if let Some((value, rule)) = labelled {
                    return Some((
                        value,
                        Finding {
                            segs: Vec::new(),
                            leaf: Leaf::Name(rule.to_string()),
                            redact_key: false,
                        },
                    ));
                }
                continue;
            };
            let in_names = names.iter().any(|r| r.contains(&idx));
            if let Some(hash) = key_hash {
                let long = !too_short_to_hold_one(s);
                if long && has_token(s) {
                    return Some((
                        idx,
                        Finding {
                            segs: Vec::new(),
                            leaf: Leaf::Token,
                            redact_key: true,
                        },
                    ));
                }
                // A credential used as a key (`{"ghp_...": 1}`): refused, and not shown.
                if let Some(format) = long.then(|| self.credential_format(s)).flatten() {
                    return Some((
                        idx,
                        Finding {
                            segs: Vec::new(),
                            leaf: Leaf::Format(format),
                            redact_key: true,
                        },
                    ));
                }
                // `true`, `false` and `null` carry nothing to leak: a name over one is a flag or a
                // setting (`hide_password: true`), whatever its words.
                let holds_something = || {
                    doc.value_at(idx + 1)
                        .is_some_and(|v| !matches!(v.kind(), Kind::Bool | Kind::Null))
                };
                if in_names && holds_something() {
                    // A category container (`"auth": {...}`) is judged by what it holds: its
                    // members are name-checked like any others.
                    let container = || {
                        doc.value_at(idx + 1)
                            .is_some_and(|v| matches!(v.kind(), Kind::Object | Kind::Array))
                    };
                    if let Some(rule) = self
                        .check_key(s, hash)
                        .filter(|rule| !(is_container_rule(rule) && container()))
                    {
                        return Some((
                            idx,
                            Finding {
                                segs: Vec::new(),
                                leaf: Leaf::Name(rule.to_string()),
                                redact_key: false,
                            },
                        ));
                    }
                }
            } else if let Some(finding) = self.string_value(s, in_names, level) {
                return Some((idx, finding));
            }
        }
        None
    }

    fn string_value(&mut self, s: JsonStr<'_>, in_names: bool, level: usize) -> Option<Finding> {
        let token = Finding {
            segs: Vec::new(),
            leaf: Leaf::Token,
            redact_key: false,
        };
        if too_short_to_hold_one(s) {
            // Nothing to find in it but JSON (`{"pwd":1}` is short).
            if !may_hold_json(s.raw()) {
                return None;
            }
        } else if has_plain_token(s) {
            return Some(token);
        }
        if let Some(format) = self.credential_format(s) {
            return Some(Finding {
                segs: Vec::new(),
                leaf: Leaf::Format(format),
                redact_key: false,
            });
        }
        if !may_hold_json(s.raw()) {
            return has_encoded_token_only(s).then_some(token);
        }
        // Decode into this level's reusable buffer (taken out while the text is inspected).
        let mut text = self
            .ws
            .decoded
            .get_mut(level)
            .map(core::mem::take)
            .unwrap_or_default();
        s.decode_into(&mut text);
        let finding = self.embedded(&text, in_names, level);
        if self.ws.decoded.len() <= level {
            self.ws.decoded.resize_with(level + 1, String::new);
        }
        if let Some(slot) = self.ws.decoded.get_mut(level) {
            *slot = text;
        }
        // Encoded forms last: JSON inside the string, inspected above, names a precise path.
        finding.or_else(|| has_encoded_token(s).then_some(token))
    }

    /// Inspects the decoded text of a string that may hold JSON.
    fn embedded(&mut self, text: &str, in_names: bool, level: usize) -> Option<Finding> {
        let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r']);
        let first = trimmed.bytes().next();
        if !matches!(first, Some(b'{' | b'[' | b'"')) {
            return None;
        }
        if level <= self.config.max_embedded_depth {
            let mut buffers = core::mem::take(&mut self.ws.buffers);
            let parsed = json::parse_str_with(text, &self.options, &mut buffers);
            self.ws.buffers = buffers;
            if let Ok(inner) = parsed {
                let all = 0..inner.node_count();
                let names = if in_names {
                    core::slice::from_ref(&all)
                } else {
                    &[]
                };
                let found = self.scan(&inner, all.clone(), names, level + 1);
                let Some((idx, finding)) = found else {
                    self.ws.buffers.recycle(inner);
                    return None;
                };
                let mut segs = vec![Seg::Json];
                segs.extend(path_to(inner.root(), idx));
                if finding.redact_key {
                    if let Some(last) = segs.last_mut() {
                        *last = Seg::Redacted;
                    }
                }
                segs.extend(finding.segs);
                return Some(Finding {
                    segs,
                    leaf: finding.leaf,
                    redact_key: false,
                });
            }
        }
        if first == Some(b'"') {
            return None;
        }
        self.loose(text, in_names)
    }

    /// The fallback for text that starts like JSON but is not strict JSON (or is nested too
    /// deep): tokens after loosely removing escapes, and names before every `:`.
    fn loose(&mut self, text: &str, in_names: bool) -> Option<Finding> {
        let found = |segs: Vec<Seg>, leaf: Leaf| {
            Some(Finding {
                segs,
                leaf,
                redact_key: false,
            })
        };
        if text.contains('\\') {
            let unescaped = loose_unescape(text);
            if contains_token(unescaped.as_bytes()) {
                return found(vec![Seg::Json], Leaf::Token);
            }
            // Formats behind any level of escaping (the text itself was scanned already).
            let policy = &self.config.formats;
            if let Some((_, format)) = find_format_from(unescaped.as_bytes(), 0, policy)
                .filter(|(_, f)| policy.action(*f) == FormatAction::Enforce)
            {
                return found(vec![Seg::Json], Leaf::Format(format));
            }
        }
        if !in_names {
            return None;
        }
        let b = text.as_bytes();
        for (colon, _) in b.iter().enumerate().filter(|(_, &c)| c == b':') {
            let Some(candidate) = loose_key_before(text, colon) else {
                continue;
            };
            let name = loose_unescape(candidate);
            if let Some(rule) = self.check_name(&name) {
                return found(
                    vec![Seg::Json, Seg::Key(name.clone())],
                    Leaf::Name(rule.to_string()),
                );
            }
        }
        None
    }
}

/// Shorter than any token of ours (in any encoding) and any credential format: decoding never
/// lengthens a string, so the raw length decides. Most strings of a dense body are.
#[inline]
fn too_short_to_hold_one(s: JsonStr<'_>) -> bool {
    s.raw().len() < MIN_FORMAT_LEN.min(MIN_TOKEN_LEN)
}

/// True when a string holds a token, judged on its decoded text. Only `\u` escapes can produce
/// token characters (`[A-Za-z0-9_]`), so the string is decoded only when one does.
#[inline]
fn has_token(s: JsonStr<'_>) -> bool {
    has_plain_token(s) || has_encoded_token(s)
}

/// A token as written, or behind JSON's own `\u` escapes.
fn has_plain_token(s: JsonStr<'_>) -> bool {
    // Decoding never lengthens a string: shorter raw text cannot hold a token.
    let raw = s.raw();
    raw.len() >= MIN_TOKEN_LEN
        && (contains_token(raw.as_bytes())
            || (s.is_escaped() && contains_token(s.decode().as_bytes())))
}

/// A token encoded the ways a server might decode a value (percent-encoding in a URL, base64,
/// backslash escapes): the decodings of request headers, on the text as the server reads it
/// (escapes can break base64 into lines, `\n`, or make token characters, `\u005f`).
fn has_encoded_token(s: JsonStr<'_>) -> bool {
    let raw = s.raw();
    raw.len() >= MIN_TOKEN_LEN && (holds_token(raw) || (s.is_escaped() && holds_token(&s.decode())))
}

/// [`has_encoded_token`] for a string [`has_plain_token`] has already cleared.
fn has_encoded_token_only(s: JsonStr<'_>) -> bool {
    let raw = s.raw();
    raw.len() >= MIN_TOKEN_LEN
        && (holds_encoded_token(raw) || (s.is_escaped() && holds_encoded_token(&s.decode())))
}

/// Cheap test on the raw (escaped) text: after JSON whitespace, written or escaped, does it start
/// with `{`, `[`, `"` (written as `\"`) or a `\u` escape?
#[inline]
fn may_hold_json(raw: &str) -> bool {
    let b = raw.as_bytes();
    let mut i = 0;
    loop {
        match (b.get(i), b.get(i + 1)) {
            (Some(b' ' | b'\t' | b'\n' | b'\r'), _) => i += 1,
            (Some(b'\\'), Some(b'n' | b't' | b'r')) => i += 2,
            (Some(b'{' | b'['), _) | (Some(b'\\'), Some(b'"' | b'u')) => return true,
            _ => return false,
        }
    }
}

/// The loose candidate name before the `:` at byte `colon`: a quoted run (`"..."` or `'...'`,
/// backslashes around it ignored) or a bare word following `{` or `,`.
fn loose_key_before(text: &str, colon: usize) -> Option<&str> {
    let b = text.as_bytes();
    let mut end = colon;
    while end > 0 && matches!(b.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r' | b'\\')) {
        end -= 1;
    }
    let last = *b.get(end.checked_sub(1)?)?;
    if last == b'"' || last == b'\'' {
        let close = end - 1;
        // Quotes at this key's level of escaping carry as many backslashes as the closing one:
        // a quote with another count is part of the key (`pass\"word`), not its start.
        let backslashes_before = |i: usize| {
            b.get(..i).map_or(0, |head| {
                head.iter().rev().take_while(|&&c| c == b'\\').count()
            })
        };
        let level = backslashes_before(close);
        let open = (0..close.saturating_sub(level))
            .rev()
            .find(|&i| b.get(i) == Some(&last) && backslashes_before(i) == level)?;
        return text.get(open + 1..close - level);
    }
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b'-';
    if !is_word(last) {
        return None;
    }
    let mut start = end;
    while start > 0 && b.get(start - 1).copied().is_some_and(is_word) {
        start -= 1;
    }
    let mut before = start;
    while before > 0 && matches!(b.get(before - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        before -= 1;
    }
    match before.checked_sub(1).and_then(|i| b.get(i)) {
        Some(b'{' | b',') => text.get(start..end),
        _ => None,
    }
}

/// Removes backslash escapes loosely, at any level of escaping: a run of backslashes followed by
/// `u` and four hex digits becomes that character, followed by `n`, `t`, `r`, `b` or `f` becomes
/// a space, and otherwise is dropped.
fn loose_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut j = i;
        while chars.peek().is_some_and(|&(_, c)| c == '\\') {
            if let Some((k, _)) = chars.next() {
                j = k;
            }
        }
        let after = j + 1;
        let rest = s.get(after..).unwrap_or_default();
        if let Some(hex) = rest.strip_prefix('u').and_then(|r| r.get(..4)) {
            if let Ok(unit) = u32::from_str_radix(hex, 16) {
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(char::from_u32(unit).unwrap_or(' '));
                    for _ in 0..5 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        if let Some((_, 'n' | 't' | 'r' | 'b' | 'f')) = chars.peek() {
            out.push(' ');
            chars.next();
        }
    }
    out
}

/// The path of a `params` member (or, for `completion/complete`, of a member one level down that
/// the name checks read) whose name folds to a protocol name but is spelled differently.
fn misspelt_params_member(method: Option<&str>, params: Option<Value<'_, '_>>) -> Option<Vec<Seg>> {
    let params = params.filter(|p| p.kind() == Kind::Object)?;
    let canonical = if method == Some("tools/call") {
        TOOL_CALL_MEMBERS
    } else {
        PARAMS_MEMBERS
    };
    let params_key = || Seg::Key("params".into());
    if let Some(key) = noncanonical_member(params, canonical) {
        return Some(vec![params_key(), Seg::Key(key)]);
    }
    if method != Some("completion/complete") {
        return None;
    }
    let nested: [(&str, &[&str]); 2] = [
        ("argument", &["name", "value"]),
        ("context", &["arguments"]),
    ];
    nested.into_iter().find_map(|(member, canonical)| {
        let obj = params.get(member).filter(|v| v.kind() == Kind::Object)?;
        let key = noncanonical_member(obj, canonical)?;
        Some(vec![params_key(), Seg::Key(member.into()), Seg::Key(key)])
    })
}

/// Adds to `names` the subtrees whose keys the client writes and the name policy judges, besides
/// `tools/call` arguments (MCP 2026-07-28 and earlier):
/// - `params._meta` of any request or notification (free-form, extensions and vendors add keys);
/// - `params.inputResponses` (`tools/call`, `prompts/get`, `resources/read`, and the tasks
///   extension's `tasks/update`): the user's answers to elicitations (`content`), sampling
///   results and roots, sent again with the retried request;
/// - `prompts/get` `params.arguments`; `completion/complete` `params.context.arguments`;
/// - a client's JSON-RPC response (`result`, and `error.data`): elicitation and sampling
///   results in revisions that still have server-to-client requests.
///
/// Everything else in a message is token-scanned only: its keys are protocol-defined, or
/// server-issued (`cursor`, `requestState`), or not keyed at all (URIs, `reason`).
fn client_data(
    method: Option<&str>,
    params: Option<Value<'_, '_>>,
    result: Option<Value<'_, '_>>,
    error: Option<Value<'_, '_>>,
    names: &mut Vec<Range<usize>>,
) {
    let mut add = |v: Option<Value<'_, '_>>| {
        if let Some(v) = v.filter(|v| matches!(v.kind(), Kind::Object | Kind::Array)) {
            names.push(v.index()..v.subtree_end());
        }
    };
    if let Some(params) = params.filter(|p| p.kind() == Kind::Object) {
        let [meta, input_responses, arguments, context] =
            params.members(["_meta", "inputResponses", "arguments", "context"]);
        add(meta);
        add(input_responses);
        match method {
            Some("prompts/get") => add(arguments),
            Some("completion/complete") => add(context.and_then(|c| c.get("arguments"))),
            _ => {}
        }
    }
    if method.is_none() {
        add(result);
        add(error.and_then(|e| e.get("data")));
    }
}

/// A member whose name folds to one of `canonical` but is spelled differently.
fn noncanonical_member(obj: Value<'_, '_>, canonical: &[&str]) -> Option<String> {
    let longest = canonical.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut folded = String::new();
    let is_canonical = |name: &str| {
        canonical
            .iter()
            .any(|c| same_bytes(c.as_bytes(), name.as_bytes()))
    };
    for (key, _) in obj.entries() {
        let name = key.decode();
        if is_canonical(&name) || name.len() > longest * 4 {
            continue;
        }
        // ASCII folds to its lower case, and the canonical names are lower-case ASCII.
        let collides = if name.is_ascii() {
            canonical.iter().any(|c| c.eq_ignore_ascii_case(&name))
        } else {
            folded.clear();
            fold_str_into(&name, &mut folded);
            canonical.iter().any(|c| c.eq_ignore_ascii_case(&folded))
        };
        if collides {
            return Some(name.into_owned());
        }
    }
    None
}

/// The id as JSON text to echo, when it is safe and short.
fn echo_id(id: Option<Value<'_, '_>>) -> Option<String> {
    let id = id?;
    let text = id.raw_text();
    let ok = match id.kind() {
        Kind::Number => true,
        Kind::String => id.as_str().is_some_and(|s| !has_token(s)),
        _ => false,
    };
    (ok && text.len() <= MAX_ID_ECHO).then(|| text.to_string())
}

/// Compares `Mcp-Method` / `Mcp-Name` with the body; `Err` holds a client-safe detail.
fn check_headers(
    headers: &McpHeaders<'_>,
    method: Option<&str>,
    params: Option<Value<'_, '_>>,
) -> Result<(), &'static str> {
    match headers.method {
        [] => {}
        [value] => {
            let value = decode_header_value(value).ok_or("Mcp-Method is not a valid value")?;
            if method != Some(value.as_ref()) {
                return Err("the Mcp-Method header does not match the body's method");
            }
        }
        _ => return Err("more than one Mcp-Method header"),
    }
    match headers.name {
        [] => Ok(()),
        [value] => {
            let value = decode_header_value(value).ok_or("Mcp-Name is not a valid value")?;
            let params = params.filter(|p| p.kind() == Kind::Object);
            let member = |key: &str| params.and_then(|p| p.get(key)).and_then(|v| v.as_str());
            let target = match method {
                Some("tools/call" | "prompts/get") => member("name"),
                Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => {
                    member("uri")
                }
                _ => member("name").or_else(|| member("uri")),
            };
            if target.is_some_and(|t| t.eq_str(&value)) {
                Ok(())
            } else {
                Err("the Mcp-Name header does not match the body's params")
            }
        }
        _ => Err("more than one Mcp-Name header"),
    }
}

/// A header value, decoded from the SEP-2243 `=?base64?...?=` form when it uses it. `None` when
/// that form does not decode to UTF-8.
fn decode_header_value(value: &str) -> Option<Cow<'_, str>> {
    if value.len() > MAX_HEADER_VALUE {
        return None;
    }
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64_decode(encoded)?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(value)),
    }
}

/// Standard base64 (RFC 4648 §4) with optional padding; `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

/// Path from `root` down to tape index `target` (a value or a key).
fn path_to(root: Value<'_, '_>, target: usize) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut cur = root;
    while cur.index() != target {
        let mut next = None;
        match cur.kind() {
            Kind::Object => {
                for (key, value) in cur.entries() {
                    let key_idx = value.index().saturating_sub(1);
                    if key_idx == target {
                        segs.push(Seg::Key(key.decode().into_owned()));
                        return segs;
                    }
                    if (value.index()..value.subtree_end()).contains(&target) {
                        segs.push(Seg::Key(key.decode().into_owned()));
                        next = Some(value);
                        break;
                    }
                }
            }
            Kind::Array => {
                for (i, value) in cur.items().enumerate() {
                    if (value.index()..value.subtree_end()).contains(&target) {
                        segs.push(Seg::Index(i));
                        next = Some(value);
                        break;
                    }
                }
            }
            _ => {}
        }
        match next {
            Some(v) => cur = v,
            None => break,
        }
    }
    segs
}

/// Renders a path: `a.b[2]["odd key"](json).c`, ASCII only, at most [`MAX_PATH`] bytes.
fn render_path(prefix: &str, segs: &[Seg]) -> String {
    let mut out = String::from(prefix);
    for seg in segs {
        let mut piece = String::new();
        match seg {
            Seg::Key(k) if is_plain_key(k) => {
                if !out.is_empty() {
                    piece.push('.');
                }
                piece.push_str(k);
            }
            Seg::Key(k) => {
                piece.push_str("[\"");
                push_sanitized(k, MAX_SEGMENT_CHARS, &mut piece);
                piece.push_str("\"]");
            }
            Seg::Index(i) => {
                piece.push('[');
                piece.push_str(&i.to_string());
                piece.push(']');
            }
            Seg::Json => piece.push_str("(json)"),
            Seg::Redacted => piece.push_str("[?]"),
        }
        if out.len() + piece.len() > MAX_PATH {
            out.push_str("...");
            break;
        }
        out.push_str(&piece);
    }
    out
}

fn is_plain_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    k.len() <= MAX_SEGMENT_CHARS
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'-')
}

/// Appends `s` as printable ASCII: `"` and `\` escaped, other characters outside U+0020–U+007E
/// as `\uXXXX` (surrogate pairs above U+FFFF); cut after `max_chars` characters with `...`.
fn push_sanitized(s: &str, max_chars: usize, out: &mut String) {
    for (n, c) in s.chars().enumerate() {
        if n >= max_chars {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", unit));
                }
            }
        }
    }
}

/// A client-sent tool or method name as it may appear in a message, a log line or the access
/// log: printable ASCII (others escaped), at most 64 characters, `[?]` if it holds a token.
pub fn sanitize_tool(name: &str) -> String {
    if contains_token(name.as_bytes()) {
        return "[?]".to_string();
    }
    let mut out = String::new();
    push_sanitized(name, MAX_TOOL_CHARS, &mut out);
    out
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn tools_call(arguments: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{arguments}}}}}"#
        )
    }

    #[test]
    fn name_verdicts_are_cached_per_policy() {
        let default = InspectConfig::default();
        let strict = InspectConfig {
            names: NamePolicy::with_extra(["sk", "page token"], [] as [&str; 0]).unwrap(),
            ..InspectConfig::default()
        };
        let items: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"sk":{i},"pageToken":"p","q":1}}"#))
            .collect();
        let body = tools_call(&format!(r#"{{"items":[{}]}}"#, items.join(",")));
        for _ in 0..3 {
            // Same thread, same workspace: each policy gets its own verdicts.
            assert!(inspect_body(body.as_bytes(), &default).is_allow());
            let r = inspect_body(body.as_bytes(), &strict);
            assert_eq!(r.rejection().map(|r| r.rule.as_str()), Some("sk"));
            assert_eq!(
                r.rejection().map(|r| r.path.as_str()),
                Some("arguments.items[0].sk")
            );
            assert!(inspect_body(body.as_bytes(), &default.clone()).is_allow());
        }
        // The same raw key text under two spellings of a denied name, cached or not.
        let body = tools_call(r#"{"a":[{"Password":1},{"Pass\u0077ord":1}]}"#);
        let r = inspect_body(body.as_bytes(), &default);
        assert_eq!(r.rejection().map(|r| r.rule.as_str()), Some("password"));
        // Many distinct keys (the verdict cache fills up and starts over) stay exact.
        for round in 0..3 {
            let keys: Vec<String> = (0..600)
                .map(|i| format!(r#""key_{round}_{i}_with_a_rather_long_name":{i}"#))
                .collect();
            let clean = tools_call(&format!("{{{}}}", keys.join(",")));
            assert!(inspect_body(clean.as_bytes(), &default).is_allow());
            let dirty = tools_call(&format!("{{{},\"x_{round}_secret\":1}}", keys.join(",")));
            let r = inspect_body(dirty.as_bytes(), &default);
            assert_eq!(r.rejection().map(|r| r.rule.as_str()), Some("secret"));
        }
    }

    #[test]
    fn base64_sentinel() {
        assert_eq!(
            decode_header_value("=?base64?Y2Fmw6k=?=").as_deref(),
            Some("café")
        );
        assert_eq!(
            decode_header_value("=?base64?Y2Fmw6k?=").as_deref(),
            Some("café")
        );
        assert_eq!(
            decode_header_value("=?BASE64?Y2Fmw6k=?=").as_deref(),
            Some("=?BASE64?Y2Fmw6k=?=")
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
        assert_eq!(decode_header_value("=?base64?/w==?="), None, "not UTF-8");
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
    }

    #[test]
    fn paths_render_safely() {
        let segs = vec![
            Seg::Key("arguments".into()),
            Seg::Key("config".into()),
            Seg::Index(2),
            Seg::Key("odd key\"\u{e9}\u{1f600}".into()),
            Seg::Json,
            Seg::Key("password".into()),
            Seg::Redacted,
        ];
        assert_eq!(
            render_path("", &segs),
            "arguments.config[2][\"odd key\\\"\\u00e9\\ud83d\\ude00\"](json).password[?]"
        );
        assert_eq!(render_path("[3]", &segs[..1]), "[3].arguments");
        let long: Vec<Seg> = (0..100).map(|i| Seg::Key(format!("k{i}"))).collect();
        let p = render_path("", &long);
        assert!(p.len() <= MAX_PATH + 3 && p.ends_with("..."), "{p}");
        let huge = vec![Seg::Key("x".repeat(1000))];
        assert!(render_path("", &huge).len() < 80);
    }

    #[test]
    fn loose_helpers() {
        assert_eq!(loose_unescape(r#"\\\"pass\\u0077ord\\\""#), "\"password\"");
        assert_eq!(loose_unescape(r"a\nb\\tc"), "a b c");
        assert_eq!(loose_key_before(r#"{"password":1"#, 11), Some("password"));
        assert_eq!(loose_key_before(r#"{\"password\":1"#, 13), Some("password"));
        assert_eq!(
            loose_key_before(r#"{"pass\"word":1"#, 13),
            Some("pass\\\"word")
        );
        assert_eq!(
            loose_key_before(r#"{\"pass\\\"word\":1"#, 17),
            Some("pass\\\\\\\"word")
        );
        assert_eq!(loose_key_before("{ apiKey : 1", 9), Some("apiKey"));
        assert_eq!(loose_key_before("[note] token: x", 12), None);
        assert!(may_hold_json(r#"{"a":1}"#));
        assert!(may_hold_json(r#" \n\t[1]"#));
        assert!(may_hold_json(r#"\"{}\""#));
        assert!(may_hold_json(r#"\u007b"#));
        assert!(!may_hold_json("plain text"));
        assert!(!may_hold_json(""));
    }
}
