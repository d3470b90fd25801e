//! Parses a policy document (YAML, or JSON when it starts with `{`) into the canonical
//! `Policy`, refusing unknown fields, bad patterns, unknown roles and empty documents with a
//! message that names the line.
//!
//! ```yaml
//! mode: enforce            # or audit: forward what the policy forbids, count and log it
//! roles:
//!   viewer:
//!     tools: ["search_*", "get_*", "echo"]
//!   member:
//!     tools: ["*"]
//!     deny_tools: ["delete_*", "admin_*"]
//!     methods: ["resources/*", "prompts/*"]     # default: DEFAULT_METHODS
//!     deny_methods: ["prompts/get"]
//! ```

use std::collections::BTreeMap;
use std::fmt;

use mcp_guard_protocol::label::{is_valid_label, LABEL_RULE};
use mcp_guard_protocol::policy::{Mode, Policy, RoleRules, DEFAULT_METHODS};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Largest document accepted (the admin API's body limit leaves room for the JSON around it).
pub const MAX_DOCUMENT_BYTES: usize = 48 * 1024;

/// Why a document is refused; `line` is 1-based when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    mode: DocumentMode,
    #[serde(deserialize_with = "unique_roles")]
    roles: BTreeMap<String, RoleDocument>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DocumentMode {
    #[default]
    Enforce,
    Audit,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDocument {
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    deny_tools: Vec<String>,
    methods: Option<Vec<String>>,
    #[serde(default)]
    deny_methods: Vec<String>,
}

const REPEATED: &str = " is listed twice";

/// A map of roles that refuses a role named twice (serde's maps keep the last silently).
fn unique_roles<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, RoleDocument>, D::Error> {
    struct Roles;
    impl<'de> Visitor<'de> for Roles {
        type Value = BTreeMap<String, RoleDocument>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of role names to their rules")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut roles = BTreeMap::new();
            while let Some((role, rules)) = map.next_entry::<String, RoleDocument>()? {
                if roles.contains_key(&role) {
                    return Err(de::Error::custom(format!("role {role:?}{REPEATED}")));
                }
                roles.insert(role, rules);
            }
            Ok(roles)
        }
    }
    deserializer.deserialize_map(Roles)
}

/// Parses and validates `source`. `known_roles`: the roles in use in the org; a role outside
/// them is refused (a typo would otherwise leave the real role with no tools) unless `None`.
pub fn parse(source: &str, known_roles: Option<&[String]>) -> Result<Policy, DocumentError> {
    if source.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError {
            line: None,
            message: format!("the document is over {MAX_DOCUMENT_BYTES} bytes"),
        });
    }
    if source.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    }) {
        return Err(DocumentError {
            line: None,
            message: "the document is empty: a policy needs `roles`".into(),
        });
    }
    let parsed: Result<Document, DocumentError> = if source.trim_start().starts_with('{') {
        serde_json::from_str(source).map_err(|err| DocumentError {
            line: Some(err.line()),
            message: strip_position(&err.to_string()),
        })
    } else {
        serde_yaml::from_str(source).map_err(|err| DocumentError {
            line: err.location().map(|at| at.line()),
            message: strip_position(&err.to_string()),
        })
    };
    let document = parsed.map_err(|mut err| {
        // The parsers place a map's own errors at the map; a repeated role is at its repeat.
        if let Some(role) = err
            .message
            .split('"')
            .nth(1)
            .filter(|_| err.message.contains(REPEATED))
        {
            err.line = role_lines(source, role).nth(1).or(err.line);
        }
        err
    })?;
    let policy = Policy {
        mode: match document.mode {
            DocumentMode::Enforce => Mode::Enforce,
            DocumentMode::Audit => Mode::Audit,
        },
        roles: document
            .roles
            .into_iter()
            .map(|(role, rules)| RoleRules {
                role,
                tools: rules.tools,
                deny_tools: rules.deny_tools,
                methods: rules
                    .methods
                    .unwrap_or_else(|| DEFAULT_METHODS.iter().map(|m| m.to_string()).collect()),
                deny_methods: rules.deny_methods,
            })
            .collect(),
    };
    for rules in &policy.roles {
        let unknown = known_roles.is_some_and(|known| !known.contains(&rules.role));
        if is_valid_label(&rules.role) && unknown {
            let known = known_roles.unwrap_or_default().join(", ");
            return Err(DocumentError {
                line: line_of(source, &rules.role, None),
                message: format!(
                    "role {:?} is not held by any user or key of this org (roles in use: {}); \
                     pass --allow-unknown-roles to set it anyway",
                    rules.role,
                    if known.is_empty() { "none" } else { &known }
                ),
            });
        }
        if !is_valid_label(&rules.role) {
            return Err(DocumentError {
                line: line_of(source, &rules.role, None),
                message: format!("role {:?} is not a role name ({LABEL_RULE})", rules.role),
            });
        }
    }
    policy.check().map_err(|err| DocumentError {
        line: line_of(source, &err.item, err.role.as_deref()),
        message: err.message,
    })?;
    Ok(policy)
}

/// serde's messages end with "at line L column C"; the line is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The first line holding `item` after the line that names `role` (if given): what a
/// semantic error (a pattern, a role) points at, since the parsers keep no positions past
/// parsing.
fn line_of(source: &str, item: &str, role: Option<&str>) -> Option<usize> {
    if item.is_empty() {
        return None;
    }
    let start = role
        .and_then(|role| {
            source.lines().position(|line| {
                line.contains(&format!("{role}:")) || line.contains(&format!("\"{role}\""))
            })
        })
        .unwrap_or(0);
    source
        .lines()
        .enumerate()
        .skip(start)
        .find(|(_, line)| line.contains(item))
        .map(|(index, _)| index + 1)
}

/// The (1-based) lines that name `role` as a key, in YAML or JSON.
fn role_lines<'a>(source: &'a str, role: &'a str) -> impl Iterator<Item = usize> + 'a {
    let yaml_key = format!("{role}:");
    let json_key = format!("\"{role}\"");
    source
        .lines()
        .enumerate()
        .filter(move |(_, line)| {
            let line = line.trim_start();
            line.starts_with(&yaml_key) || line.contains(&json_key)
        })
        .map(|(index, _)| index + 1)
}

/// One line for `policy set` and the audit trail: `mode enforce; roles admin (1 tools, 0
/// denied), ...`.
pub fn summary(policy: &Policy) -> String {
    let roles: Vec<String> = policy
        .roles
        .iter()
        .map(|rules| {
            format!(
                "{} ({} tools, {} denied)",
                rules.role,
                rules.tools.len(),
                rules.deny_tools.len()
            )
        })
        .collect();
    format!(
        "mode {}; roles {}",
        policy.mode.as_str(),
        if roles.is_empty() {
            "none".to_string()
        } else {
            roles.join(", ")
        }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"# The example of docs/policy.md
roles:
  viewer:
    tools: ["search_*", "get_*", "echo"]   # allowed tool names
  member:
    tools: ["*"]
    deny_tools: ["delete_*", "admin_*"]    # deny wins over allow
  admin:
    tools: ["*"]
"#;

    fn known() -> Vec<String> {
        ["admin", "member", "viewer"].map(String::from).to_vec()
    }

    #[test]
    fn the_example_parses_into_sorted_roles_with_default_methods() {
        let policy = parse(EXAMPLE, Some(&known())).unwrap();
        assert_eq!(policy.mode, Mode::Enforce);
        let roles: Vec<&str> = policy.roles.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(roles, ["admin", "member", "viewer"]);
        assert_eq!(policy.roles[1].deny_tools, ["delete_*", "admin_*"]);
        assert_eq!(policy.roles[2].methods, DEFAULT_METHODS.map(String::from));
        // JSON says the same.
        let json = r#"{"mode":"audit","roles":{"viewer":{"tools":["echo"],"methods":[]}}}"#;
        let policy = parse(json, None).unwrap();
        assert_eq!(policy.mode, Mode::Audit);
        assert!(policy.roles[0].methods.is_empty());
        assert_eq!(
            summary(&policy),
            "mode audit; roles viewer (1 tools, 0 denied)"
        );
    }

    #[test]
    fn every_mistake_is_refused_naming_its_line() {
        let cases: [(&str, Option<usize>, &str); 11] = [
            ("", None, "empty"),
            ("# nothing\n\n", None, "empty"),
            (
                "roles:\n  viewer:\n    tool: [echo]\n",
                Some(3),
                "unknown field `tool`",
            ),
            ("mode: loud\nroles: {}\n", Some(1), "unknown variant `loud`"),
            (
                "roles:\n  viewer:\n    tools: [echo]\n  intern:\n    tools: [echo]\n",
                Some(4),
                "intern",
            ),
            (
                "roles:\n  viewer:\n    tools:\n      - echo\n      - \"bad glob\"\n",
                Some(5),
                "not a valid pattern",
            ),
            (
                "roles:\n  Viewer:\n    tools: [echo]\n",
                Some(2),
                "not a role name",
            ),
            (
                "roles:\n  viewer:\n    tools: [echo]\n  viewer:\n    tools: [x]\n",
                Some(4),
                "",
            ),
            ("roles:\n  viewer:\n    tools: echo\n", Some(3), "sequence"),
            (
                "{\"roles\":{\"viewer\":{\"tools\":[\"echo\"]}},\n \"extra\":1}",
                Some(2),
                "unknown field `extra`",
            ),
            ("extra: 1\nroles: {}\n", Some(1), "unknown field `extra`"),
        ];
        for (source, line, words) in cases {
            let err = parse(source, Some(&known())).unwrap_err();
            assert_eq!(err.line, line, "{source:?}: {err}");
            assert!(err.to_string().contains(words), "{source:?}: {err}");
        }
        // The unknown-role check is the caller's to skip.
        let intern = "roles:\n  intern:\n    tools: [echo]\n";
        assert!(parse(intern, None).is_ok());
        assert!(parse(intern, Some(&[]))
            .unwrap_err()
            .message
            .contains("roles in use: none"));
    }
}
