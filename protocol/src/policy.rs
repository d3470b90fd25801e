//! Tool policy: which tools and MCP methods each role of an org may use (docs/policy.md).
//!
//! guardctl validates a policy and sends it to the proxies in the sync page; both sides compile
//! it with [`CompiledPolicy::compile`] and ask [`CompiledPolicy::decide`], so `guardctl policy
//! check` answers exactly what the filter does.
//!
//! **The decision.** Lifecycle methods ([`ALWAYS_ALLOWED`]) and JSON-RPC responses are always
//! allowed. A role the policy does not list may use nothing else. For `tools/call`, the tool
//! name must match one of the role's `tools` patterns and none of its `deny_tools` (deny wins).
//! Any other method (`resources/read`, `prompts/get`, `completion/complete`, a method MCP does
//! not define) must match one of the role's `methods` and none of its `deny_methods`.
//!
//! **Patterns.** `*` matches any run of characters (also none), `?` exactly one; everything
//! else matches itself. A compiled set answers with a few hash lookups per distinct prefix and
//! suffix length, so its cost does not grow with the number of rules; only patterns with a
//! wildcard inside (`a*b`, `get_?`) are tried one by one.

use std::collections::HashMap;

use serde::Serialize;

use crate::label::is_valid_label;
use crate::reader::{Malformed, Read, Reader};

/// Longest pattern (the longest tool name MCP allows is 128 characters).
pub const MAX_PATTERN_LEN: usize = 128;
/// Most patterns in one org's policy, all roles and lists together.
pub const MAX_PATTERNS: usize = 10_000;

/// The pattern rule, as guardctl states it.
pub const PATTERN_RULE: &str = "1 to 128 characters of A-Z, a-z, 0-9, '_', '-', '.' and '/', \
     with the wildcards '*' (any run of characters) and '?' (one character)";

/// Methods every key may use whatever its role, so that a client can connect and see its tools.
pub const ALWAYS_ALLOWED: [&str; 4] = ["initialize", "ping", "notifications/*", "tools/list"];

/// What a role may use besides tools when its rules name no `methods`.
pub const DEFAULT_METHODS: [&str; 4] = [
    "resources/*",
    "prompts/*",
    "completion/complete",
    "logging/setLevel",
];

/// True when a client's tool name keeps MCP's grammar (1 to 128 of `A-Z a-z 0-9 _ - . /`). An
/// org with a policy refuses other names: a server that trims, folds or normalises names could
/// otherwise run a tool a rule meant to deny.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PATTERN_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

/// True when `pattern` keeps [`PATTERN_RULE`].
pub fn is_valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && pattern.len() <= MAX_PATTERN_LEN
        && pattern.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'*' | b'?')
        })
}

/// Enforce (refuse what the policy forbids) or audit (forward it, count it and log it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// One org's policy, as it travels: roles sorted by name, every list explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Policy {
    pub mode: Mode,
    pub roles: Vec<RoleRules>,
}

/// What one role may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RoleRules {
    pub role: String,
    pub tools: Vec<String>,
    pub deny_tools: Vec<String>,
    pub methods: Vec<String>,
    pub deny_methods: Vec<String>,
}

/// Which list of a role, for the rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Tools,
    DenyTools,
    Methods,
    DenyMethods,
}

impl List {
    pub fn as_str(self) -> &'static str {
        match self {
            List::Tools => "tools",
            List::DenyTools => "deny_tools",
            List::Methods => "methods",
            List::DenyMethods => "deny_methods",
        }
    }
}

/// Why a call is allowed or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A lifecycle method or a response: always allowed.
    Lifecycle,
    /// The role is not in the policy: nothing but lifecycle.
    UnlistedRole,
    /// A pattern of one of the role's lists matched.
    Rule { list: List, pattern: String },
    /// No pattern of the role's allow list matched.
    NotListed(List),
}

impl Reason {
    /// The reason code for metrics, logs and the access log.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Lifecycle => "lifecycle",
            Reason::UnlistedRole => "role_not_in_policy",
            Reason::Rule {
                list: List::DenyTools,
                ..
            } => "tool_denied",
            Reason::Rule {
                list: List::DenyMethods,
                ..
            } => "method_denied",
            Reason::Rule { .. } => "allowed_by_rule",
            Reason::NotListed(List::Tools | List::DenyTools) => "tool_not_allowed",
            Reason::NotListed(_) => "method_not_allowed",
        }
    }
}

/// The decision on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

/// A list of patterns, compiled for lookups whose cost does not grow with its length.
#[derive(Debug, Clone, Default)]
struct PatternSet {
    /// Patterns without wildcards.
    exact: HashMap<Box<str>, u32>,
    /// `abc*`, keyed by `abc`, and the distinct lengths of those keys.
    prefixes: HashMap<Box<str>, u32>,
    prefix_lens: Vec<usize>,
    /// `*abc`, keyed by `abc`.
    suffixes: HashMap<Box<str>, u32>,
    suffix_lens: Vec<usize>,
    /// Wildcards elsewhere (`a*b`, `get_?`, `*x*`): tried one by one.
    general: Vec<u32>,
    /// Every pattern, by index, to name the one that matched.
    patterns: Vec<Box<str>>,
}

impl PatternSet {
    fn compile(patterns: &[String]) -> PatternSet {
        let mut set = PatternSet::default();
        for pattern in patterns {
            let index = u32::try_from(set.patterns.len()).unwrap_or(u32::MAX);
            set.patterns.push(pattern.as_str().into());
            let inner = |s: &str| s.contains(['*', '?']);
            if !inner(pattern) {
                set.exact.entry(pattern.as_str().into()).or_insert(index);
            } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !inner(p)) {
                set.prefixes.entry(prefix.into()).or_insert(index);
                set.prefix_lens.push(prefix.len());
            } else if let Some(suffix) = pattern.strip_prefix('*').filter(|s| !inner(s)) {
                set.suffixes.entry(suffix.into()).or_insert(index);
                set.suffix_lens.push(suffix.len());
            } else {
                set.general.push(index);
            }
        }
        for lens in [&mut set.prefix_lens, &mut set.suffix_lens] {
            lens.sort_unstable();
            lens.dedup();
        }
        set
    }

    /// The first pattern (by kind: exact, prefix, suffix, general) that matches `name`.
    fn find(&self, name: &str) -> Option<&str> {
        let index = self
            .exact
            .get(name)
            .or_else(|| {
                self.prefix_lens
                    .iter()
                    .filter_map(|&len| name.get(..len))
                    .find_map(|prefix| self.prefixes.get(prefix))
            })
            .or_else(|| {
                self.suffix_lens
                    .iter()
                    .filter_map(|&len| name.len().checked_sub(len).and_then(|at| name.get(at..)))
                    .find_map(|suffix| self.suffixes.get(suffix))
            })
            .copied()
            .or_else(|| {
                self.general.iter().copied().find(|&index| {
                    self.pattern(index)
                        .is_some_and(|pattern| glob_matches(pattern.as_bytes(), name.as_bytes()))
                })
            })?;
        self.pattern(index)
    }

    fn pattern(&self, index: u32) -> Option<&str> {
        self.patterns
            .get(usize::try_from(index).ok()?)
            .map(|p| &**p)
    }
}

/// `*` and `?` glob match, iterative with one backtrack point (linear in practice,
/// `O(pattern x name)` at worst, both bounded in length). `?` matches one character, however
/// many bytes it takes in UTF-8.
pub fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                n += name.get(n).map_or(1, |&b| utf8_width(b));
            }
            Some(&c) if Some(&c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&c| c == b'*')
}

/// Bytes of the UTF-8 character that starts with `lead` (1 for a continuation byte).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[derive(Debug, Clone)]
struct CompiledRole {
    tools: PatternSet,
    deny_tools: PatternSet,
    methods: PatternSet,
    deny_methods: PatternSet,
}

/// An org's policy compiled once per version; [`CompiledPolicy::decide`] is all a request costs.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub mode: Mode,
    roles: HashMap<String, CompiledRole>,
    always: PatternSet,
}

impl CompiledPolicy {
    pub fn compile(policy: &Policy) -> CompiledPolicy {
        let roles = policy
            .roles
            .iter()
            .map(|rules| {
                let role = CompiledRole {
                    tools: PatternSet::compile(&rules.tools),
                    deny_tools: PatternSet::compile(&rules.deny_tools),
                    methods: PatternSet::compile(&rules.methods),
                    deny_methods: PatternSet::compile(&rules.deny_methods),
                };
                (rules.role.clone(), role)
            })
            .collect();
        let always: Vec<String> = ALWAYS_ALLOWED.iter().map(|m| m.to_string()).collect();
        CompiledPolicy {
            mode: policy.mode,
            roles,
            always: PatternSet::compile(&always),
        }
    }

    /// Whether `role` may make a call of `method` (`None`: a response), with `tool` the
    /// `params.name` of a `tools/call`.
    pub fn decide(&self, role: &str, method: Option<&str>, tool: Option<&str>) -> Decision {
        let Some(method) = method.filter(|m| self.always.find(m).is_none()) else {
            return Decision {
                allowed: true,
                reason: Reason::Lifecycle,
            };
        };
        let Some(rules) = self.roles.get(role) else {
            return Decision {
                allowed: false,
                reason: Reason::UnlistedRole,
            };
        };
        let (name, allow, deny, allow_list, deny_list) = if method == "tools/call" {
            let tool = tool.unwrap_or_default();
            (
                tool,
                &rules.tools,
                &rules.deny_tools,
                List::Tools,
                List::DenyTools,
            )
        } else {
            (
                method,
                &rules.methods,
                &rules.deny_methods,
                List::Methods,
                List::DenyMethods,
            )
        };
        let rule = |list: List, pattern: &str| Reason::Rule {
            list,
            pattern: pattern.to_string(),
        };
        if let Some(pattern) = deny.find(name) {
            return Decision {
                allowed: false,
                reason: rule(deny_list, pattern),
            };
        }
        match allow.find(name) {
            Some(pattern) => Decision {
                allowed: true,
                reason: rule(allow_list, pattern),
            },
            None => Decision {
                allowed: false,
                reason: Reason::NotListed(allow_list),
            },
        }
    }

    /// True when the role may call every tool (`tools: ["*"]`, no `deny_tools`): its
    /// `tools/list` answers need no filtering.
    pub fn sees_every_tool(&self, role: &str) -> bool {
        self.roles.get(role).is_some_and(|rules| {
            rules.deny_tools.patterns.is_empty() && rules.tools.patterns.iter().any(|p| &**p == "*")
        })
    }
}

/// Why a policy is refused, naming where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The role whose rules break a rule, if any.
    pub role: Option<String>,
    /// The offending text (a role name or a pattern).
    pub item: String,
    pub message: String,
}

impl Policy {
    /// Every rule a policy must keep: role names of the label grammar, each once and sorted,
    /// patterns of [`PATTERN_RULE`], at most [`MAX_PATTERNS`] of them.
    pub fn check(&self) -> Result<(), RuleError> {
        let mut count = 0usize;
        for (index, rules) in self.roles.iter().enumerate() {
            if !is_valid_label(&rules.role) {
                return Err(RuleError {
                    role: None,
                    item: rules.role.clone(),
                    message: format!(
                        "role {:?} is not a role name ({})",
                        rules.role,
                        crate::label::LABEL_RULE
                    ),
                });
            }
            let previous = index.checked_sub(1).and_then(|i| self.roles.get(i));
            if previous.is_some_and(|p| p.role >= rules.role) {
                return Err(RuleError {
                    role: Some(rules.role.clone()),
                    item: rules.role.clone(),
                    message: format!("role {:?} is listed twice or out of order", rules.role),
                });
            }
            for (list, patterns) in rules.lists() {
                for pattern in patterns {
                    count += 1;
                    if !is_valid_pattern(pattern) {
                        return Err(RuleError {
                            role: Some(rules.role.clone()),
                            item: pattern.clone(),
                            message: format!(
                                "roles.{}.{}: {:?} is not a valid pattern ({PATTERN_RULE})",
                                rules.role,
                                list.as_str(),
                                pattern
                            ),
                        });
                    }
                }
            }
        }
        if count > MAX_PATTERNS {
            return Err(RuleError {
                role: None,
                item: String::new(),
                message: format!("{count} patterns: at most {MAX_PATTERNS} per org"),
            });
        }
        Ok(())
    }

    /// The policy's canonical JSON (how it travels and is stored).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes and checks a policy in its canonical JSON.
    pub fn decode(bytes: &[u8]) -> Option<Policy> {
        let mut reader = Reader::new(bytes);
        let policy = Policy::read(&mut reader).ok()?;
        reader.end().ok()?;
        policy.check().ok().map(|()| policy)
    }

    pub(crate) fn read(reader: &mut Reader) -> Read<Policy> {
        let mut policy = Policy::default();
        let seen = reader.object(&["mode", "roles"], |r, member| {
            match member {
                0 => {
                    policy.mode = match r.string()? {
                        "enforce" => Mode::Enforce,
                        "audit" => Mode::Audit,
                        _ => return Err(Malformed),
                    }
                }
                _ => policy.roles = r.array(RoleRules::read)?,
            }
            Ok(())
        })?;
        (seen == 0b11).then_some(policy).ok_or(Malformed)
    }
}

impl RoleRules {
    /// The four lists, named.
    pub fn lists(&self) -> [(List, &Vec<String>); 4] {
        [
            (List::Tools, &self.tools),
            (List::DenyTools, &self.deny_tools),
            (List::Methods, &self.methods),
            (List::DenyMethods, &self.deny_methods),
        ]
    }

    fn read(reader: &mut Reader) -> Read<RoleRules> {
        let mut rules = RoleRules::default();
        const NAMES: [&str; 5] = ["role", "tools", "deny_tools", "methods", "deny_methods"];
        let seen = reader.object(&NAMES, |r, member| {
            let strings = |r: &mut Reader| r.array(|r| r.string().map(str::to_owned));
            match member {
                0 => rules.role = r.string()?.to_owned(),
                1 => rules.tools = strings(r)?,
                2 => rules.deny_tools = strings(r)?,
                3 => rules.methods = strings(r)?,
                _ => rules.deny_methods = strings(r)?,
            }
            Ok(())
        })?;
        (seen == 0b1_1111).then_some(rules).ok_or(Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn role(name: &str, tools: &[&str], deny_tools: &[&str]) -> RoleRules {
        RoleRules {
            role: name.into(),
            tools: strings(tools),
            deny_tools: strings(deny_tools),
            methods: strings(&DEFAULT_METHODS),
            deny_methods: vec![],
        }
    }

    /// The policy of the issue: viewer reads, member all but delete/admin, admin everything.
    fn example() -> Policy {
        Policy {
            mode: Mode::Enforce,
            roles: vec![
                role("admin", &["*"], &[]),
                role("member", &["*"], &["delete_*", "admin_*"]),
                role("viewer", &["search_*", "get_*", "echo"], &[]),
            ],
        }
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("get_*", "get_", true),
            ("get_*", "get_user", true),
            ("get_*", "xget_user", false),
            ("*_user", "get_user", true),
            ("*_user", "get_users", false),
            ("get_?", "get_a", true),
            ("get_?", "get_", false),
            ("get_?", "get_ab", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-x-c", true),
            ("a*b*c", "a-c-b", false),
            ("*x*", "xyz", true),
            ("*x*", "abc", false),
            ("echo", "echo", true),
            ("echo", "Echo", false),
            ("**", "z", true),
            ("?", "", false),
            ("admin_?", "admin_\u{e9}", true),
            ("a?c", "a\u{1F600}c", true),
            ("a??c", "a\u{1F600}c", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                glob_matches(pattern.as_bytes(), name.as_bytes()),
                expected,
                "{pattern} ~ {name}"
            );
            let set = PatternSet::compile(&strings(&[pattern]));
            assert_eq!(set.find(name).is_some(), expected, "set {pattern} ~ {name}");
        }
    }

    #[test]
    fn every_role_gets_what_the_example_says() {
        let policy = CompiledPolicy::compile(&example());
        let call = |role: &str, tool: &str| policy.decide(role, Some("tools/call"), Some(tool));
        let allowed = |role: &str, tool: &str| call(role, tool).allowed;
        assert!(allowed("viewer", "search_docs") && allowed("viewer", "echo"));
        assert!(!allowed("viewer", "delete_repo") && !allowed("viewer", "echo2"));
        assert_eq!(
            call("viewer", "write_file").reason,
            Reason::NotListed(List::Tools)
        );
        assert!(allowed("member", "write_file"));
        let denied = call("member", "delete_repo");
        assert!(!denied.allowed);
        assert_eq!(denied.reason.code(), "tool_denied");
        assert_eq!(
            denied.reason,
            Reason::Rule {
                list: List::DenyTools,
                pattern: "delete_*".into()
            }
        );
        assert!(allowed("admin", "delete_repo") && allowed("admin", "admin_reset"));
        let stranger = call("guest", "echo");
        assert_eq!(
            (stranger.allowed, stranger.reason),
            (false, Reason::UnlistedRole)
        );
        // A tools/call without a name (refused as a shape error elsewhere) matches only `*`.
        assert!(!policy.decide("viewer", Some("tools/call"), None).allowed);
    }

    #[test]
    fn every_method_has_its_decision() {
        let mut policy = example();
        policy.roles[2].methods = strings(&["resources/read"]);
        policy.roles[1].deny_methods = strings(&["prompts/*"]);
        let policy = CompiledPolicy::compile(&policy);
        let decide = |role: &str, method: Option<&str>| policy.decide(role, method, None);
        for role in ["admin", "member", "viewer", "guest"] {
            for method in [
                Some("initialize"),
                Some("ping"),
                Some("notifications/initialized"),
                Some("notifications/cancelled"),
                Some("tools/list"),
                None,
            ] {
                let decision = decide(role, method);
                assert!(decision.allowed, "{role} {method:?}");
                assert_eq!(decision.reason, Reason::Lifecycle);
            }
        }
        assert!(decide("admin", Some("resources/list")).allowed);
        assert!(decide("admin", Some("completion/complete")).allowed);
        assert!(!decide("admin", Some("tasks/cancel")).allowed);
        assert!(decide("viewer", Some("resources/read")).allowed);
        assert_eq!(
            decide("viewer", Some("resources/list")).reason.code(),
            "method_not_allowed"
        );
        assert_eq!(
            decide("member", Some("prompts/get")).reason.code(),
            "method_denied"
        );
        assert!(decide("member", Some("resources/read")).allowed);
        assert!(!decide("guest", Some("resources/read")).allowed);
        // `notifications/*` is lifecycle, but a method merely starting with a lifecycle name is not.
        assert!(!decide("viewer", Some("initialize2")).allowed);
        assert!(!decide("viewer", Some("tools/listing")).allowed);
    }

    #[test]
    fn an_empty_policy_allows_only_lifecycle() {
        let policy = CompiledPolicy::compile(&Policy::default());
        assert!(
            !policy
                .decide("admin", Some("tools/call"), Some("echo"))
                .allowed
        );
        assert!(policy.decide("admin", Some("ping"), None).allowed);
    }

    #[test]
    fn a_lookup_does_not_try_every_rule() {
        // 1,000 literal and prefix rules; the answer comes from a few hash lookups.
        let tools: Vec<String> = (0..500)
            .map(|i| format!("tool_{i}"))
            .chain((0..500).map(|i| format!("family_{i}_*")))
            .collect();
        let set = PatternSet::compile(&tools);
        assert!(set.general.is_empty());
        assert_eq!(set.exact.len(), 500);
        assert!(set.prefix_lens.len() <= 3, "{:?}", set.prefix_lens);
        assert_eq!(set.find("tool_499"), Some("tool_499"));
        assert_eq!(set.find("family_7_read"), Some("family_7_*"));
        assert_eq!(set.find("family_7"), None);
        assert_eq!(set.find("tool_500"), None);
    }

    #[test]
    fn patterns_and_roles_keep_their_rules() {
        assert!(example().check().is_ok());
        for bad in [
            "",
            "a b",
            "naïve",
            "quote\"",
            "back\\slash",
            &"x".repeat(129),
        ] {
            let mut policy = example();
            policy.roles[0].tools.push(bad.to_string());
            let err = policy.check().unwrap_err();
            assert_eq!(err.item, bad);
            assert!(err.message.contains("roles.admin.tools"), "{}", err.message);
        }
        assert!(is_valid_pattern(&"x".repeat(128)) && is_valid_pattern("fs/read.file-v2_?*"));
        let mut bad_role = example();
        bad_role.roles[0].role = "Admin".into();
        assert!(bad_role.check().is_err());
        let mut twice = example();
        twice.roles[1].role = "admin".into();
        assert!(twice.check().is_err());
        let mut huge = example();
        huge.roles[0].tools = vec!["x".into(); MAX_PATTERNS + 1];
        assert!(huge.check().unwrap_err().message.contains("at most"));
    }

    #[test]
    fn the_canonical_json_decodes_strictly() {
        let mut policy = example();
        policy.mode = Mode::Audit;
        let json = policy.encode();
        assert_eq!(Policy::decode(json.as_bytes()), Some(policy.clone()));
        for (from, to) in [
            (r#""mode":"audit""#, r#""mode":"loud""#),
            (r#""mode":"audit","#, ""),
            (r#""deny_methods":[]"#, r#""deny_methods":[],"extra":[]"#),
            (r#""role":"admin""#, r#""role":"Admin""#),
            (r#""echo""#, r#""ec ho""#),
        ] {
            assert!(json.contains(from), "{from}");
            let bad = json.replacen(from, to, 1);
            assert_eq!(Policy::decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
