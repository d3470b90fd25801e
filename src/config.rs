//! Plugin configuration: JSON parsed with unknown fields rejected, then compiled into the runtime
//! [`Config`] in `on_configure`, so a bad configuration fails at deploy time, never per request.

use mcp_guard_protocol::label::is_valid_label;
use serde::Deserialize;

use crate::mcp::formats::{Format, FormatAction, FormatPolicy};

use crate::keyset::store::Keys;
use crate::mcp::{InspectConfig, NamePolicy};

/// The JSON an operator writes in the Wasm filter's `configuration`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    org: Option<String>,
    org_from_authority: Option<String>,
    keyset_cluster: String,
    keyset_authority: Option<String>,
    #[serde(default = "default_keyset_path")]
    keyset_path: String,
    #[serde(default = "default_long_poll_ms")]
    long_poll_ms: u64,
    #[serde(default)]
    max_staleness_ms: Option<u64>,
    #[serde(default)]
    keep_authorization: bool,
    #[serde(default = "default_retry_after_seconds")]
    retry_after_seconds: u32,
    #[serde(default = "default_realm")]
    realm: String,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    policy_version: u32,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "default_max_json_depth")]
    max_json_depth: usize,
    #[serde(default = "default_inspect_path_prefixes")]
    inspect_path_prefixes: Vec<String>,
    #[serde(default)]
    deny_argument_names: Vec<String>,
    #[serde(default)]
    allow_argument_names: Vec<String>,
    /// Credential format rule -> `off`, `audit` or `enforce` (default: every format enforced).
    #[serde(default)]
    value_formats: std::collections::BTreeMap<String, FormatSetting>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatSetting {
    Off,
    Audit,
    Enforce,
}

/// What the body policy does with a request it would block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Reject it; it never reaches the upstream.
    #[default]
    Enforce,
    /// Forward it, but count and log what would have been blocked (for a safe rollout).
    Audit,
}

fn default_keyset_path() -> String {
    "/v1/keyset".into()
}
fn default_long_poll_ms() -> u64 {
    30_000
}
fn default_retry_after_seconds() -> u32 {
    1
}
fn default_realm() -> String {
    "mcp".into()
}
fn default_max_body_bytes() -> usize {
    4 << 20
}
fn default_max_json_depth() -> usize {
    64
}
fn default_inspect_path_prefixes() -> Vec<String> {
    vec!["/".into()]
}

/// Where the org of a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgSource {
    Fixed(String),
    /// `{org}.armature.app`: literal prefix and suffix around one `{org}` label.
    Authority {
        prefix: String,
        suffix: String,
    },
}

impl OrgSource {
    /// The org a request is for; `None` when the authority does not fit the pattern.
    pub fn resolve<'a>(&'a self, authority: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            OrgSource::Fixed(org) => Some(std::borrow::Cow::Borrowed(org)),
            OrgSource::Authority { prefix, suffix } => {
                let host = strip_port(authority).to_ascii_lowercase();
                let org = host
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                is_valid_label(org).then(|| std::borrow::Cow::Owned(org.to_string()))
            }
        }
    }
}

fn strip_port(authority: &str) -> &str {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// How much longer than the wait it asked for a key-set long-poll may take before it is given up.
pub const LONG_POLL_SLACK_MS: u64 = 5_000;

/// The validated, compiled configuration shared by every request of a plugin instance.
#[derive(Debug, Clone)]
pub struct Config {
    pub org: OrgSource,
    pub keyset_cluster: String,
    pub keyset_authority: String,
    pub keyset_path: String,
    pub long_poll_ms: u64,
    /// Fail closed (503) once the last successful sync is older than this; `None`: keep serving
    /// the last-known set however old.
    pub max_staleness_ms: Option<u64>,
    pub keep_authorization: bool,
    pub retry_after_seconds: u32,
    /// `Bearer realm="..."`, precomputed.
    pub challenge: String,
    pub keys: Keys,
    pub mode: Mode,
    /// An operator-chosen number for this configuration, exported as a gauge so a rollout can
    /// be followed proxy by proxy.
    pub policy_version: u32,
    pub max_body_bytes: usize,
    /// POSTs whose path starts with one of these get their body inspected.
    pub inspect_path_prefixes: Vec<String>,
    pub inspect: InspectConfig,
}

impl Config {
    /// True when a POST to `path` must be held until its body is judged.
    pub fn inspects(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        self.inspect_path_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalid mcp-guard configuration: {}", self.0)
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        raw.try_into()
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let org = match (raw.org, raw.org_from_authority) {
            (Some(org), None) if is_valid_label(&org) => OrgSource::Fixed(org),
            (Some(org), None) => {
                return Err(invalid(format!(
                    "org {org:?} must match [a-z0-9][a-z0-9-]{{0,62}}"
                )))
            }
            (None, Some(pattern)) => compile_authority_pattern(&pattern)?,
            _ => return Err(invalid("set exactly one of org and org_from_authority")),
        };
        if raw.keyset_cluster.is_empty() {
            return Err(invalid("keyset_cluster must name an Envoy cluster"));
        }
        if !raw.keyset_path.starts_with('/') || raw.keyset_path.contains(['?', '#', ' ']) {
            return Err(invalid(
                "keyset_path must be an absolute path without query",
            ));
        }
        if !(1_000..=60_000).contains(&raw.long_poll_ms) {
            return Err(invalid("long_poll_ms must be between 1000 and 60000"));
        }
        if let Some(max) = raw.max_staleness_ms {
            // A healthy long-poll answers every `long_poll_ms`; allow it that plus the call's slack.
            let floor = raw.long_poll_ms + LONG_POLL_SLACK_MS;
            if max < floor {
                return Err(invalid(format!(
                    "max_staleness_ms must be at least long_poll_ms + {LONG_POLL_SLACK_MS} ({floor}): an idle long-poll is not staleness"
                )));
            }
        }
        if !(1..=3_600).contains(&raw.retry_after_seconds) {
            return Err(invalid("retry_after_seconds must be between 1 and 3600"));
        }
        let realm_ok = !raw.realm.is_empty()
            && raw.realm.len() <= 64
            && raw
                .realm
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !realm_ok {
            return Err(invalid(
                "realm must be 1-64 printable ASCII characters without quotes",
            ));
        }
        if !(1..=64 << 20).contains(&raw.max_body_bytes) {
            return Err(invalid("max_body_bytes must be between 1 and 67108864"));
        }
        if !(1..=1_024).contains(&raw.max_json_depth) {
            return Err(invalid("max_json_depth must be between 1 and 1024"));
        }
        if raw
            .inspect_path_prefixes
            .iter()
            .any(|p| !p.starts_with('/'))
        {
            return Err(invalid(
                "inspect_path_prefixes must be paths starting with /",
            ));
        }
        let names = NamePolicy::with_extra(&raw.deny_argument_names, &raw.allow_argument_names)
            .map_err(|_| {
                invalid("deny_argument_names and allow_argument_names need at least one word each")
            })?;
        let mut formats = FormatPolicy::default();
        for (rule, setting) in &raw.value_formats {
            let format = Format::from_rule(rule).ok_or_else(|| {
                let known: Vec<&str> = Format::ALL.iter().map(|f| f.rule()).collect();
                invalid(format!(
                    "value_formats: unknown format {rule:?} (known: {})",
                    known.join(", ")
                ))
            })?;
            let action = match setting {
                FormatSetting::Off => FormatAction::Off,
                FormatSetting::Audit => FormatAction::Audit,
                FormatSetting::Enforce => FormatAction::Enforce,
            };
            formats.set(format, action);
        }
        let inspect = InspectConfig {
            max_depth: raw.max_json_depth,
            names,
            formats,
            ..InspectConfig::default()
        };
        Ok(Config {
            org,
            keys: Keys::new(&raw.keyset_cluster),
            keyset_authority: raw
                .keyset_authority
                .unwrap_or_else(|| raw.keyset_cluster.clone()),
            keyset_cluster: raw.keyset_cluster,
            keyset_path: raw.keyset_path,
            long_poll_ms: raw.long_poll_ms,
            max_staleness_ms: raw.max_staleness_ms,
            keep_authorization: raw.keep_authorization,
            retry_after_seconds: raw.retry_after_seconds,
            challenge: format!("Bearer realm=\"{}\"", raw.realm),
            mode: raw.mode,
            policy_version: raw.policy_version,
            max_body_bytes: raw.max_body_bytes,
            inspect_path_prefixes: raw.inspect_path_prefixes,
            inspect,
        })
    }
}

fn compile_authority_pattern(pattern: &str) -> Result<OrgSource, ConfigError> {
    const PLACEHOLDER: &str = "{org}";
    let (prefix, suffix) = pattern
        .split_once(PLACEHOLDER)
        .ok_or_else(|| invalid("org_from_authority must contain {org}"))?;
    let literal_ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    };
    if suffix.contains(PLACEHOLDER) || !literal_ok(prefix) || !literal_ok(suffix) {
        return Err(invalid(
            "org_from_authority must hold one {org} among lowercase host characters",
        ));
    }
    // `{org}` must be a whole DNS label, so `evil.com.armature.app`-style tricks cannot move it.
    let label_bounded = (prefix.is_empty() || prefix.ends_with('.'))
        && (suffix.is_empty() || suffix.starts_with('.'));
    if !label_bounded {
        return Err(invalid(
            "{org} must be a whole label of the host, e.g. {org}.example.com",
        ));
    }
    Ok(OrgSource::Authority {
        prefix: prefix.to_string(),
        suffix: suffix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::from_json(json.as_bytes())
    }

    /// docs/configuration.md documents exactly the fields the parser knows.
    #[test]
    fn the_reference_lists_every_field() {
        const DOC: &str = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ));
        let documented: std::collections::BTreeSet<&str> = DOC
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let error = parse(r#"{"org":"demo","keyset_cluster":"g","not_a_field":1}"#)
            .unwrap_err()
            .0;
        let known: std::collections::BTreeSet<&str> = error
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{error}"))
            .split(" at line")
            .next()
            .unwrap_or_default()
            .split(", ")
            .map(|field| field.trim_matches('`'))
            .collect();
        assert_eq!(documented, known);
    }

    #[test]
    fn minimal_fixed_org_config_gets_defaults() {
        let config = parse(r#"{"org":"demo","keyset_cluster":"guardctl"}"#).unwrap();
        assert_eq!(config.org, OrgSource::Fixed("demo".into()));
        assert_eq!(config.keyset_authority, "guardctl");
        assert_eq!(config.keyset_path, "/v1/keyset");
        assert_eq!(config.long_poll_ms, 30_000);
        assert!(!config.keep_authorization);
        assert_eq!(config.challenge, "Bearer realm=\"mcp\"");
        assert_eq!(config.max_staleness_ms, None, "default: keep serving");
        assert_eq!(config.policy_version, 0);
        let bounded = parse(
            r#"{"org":"demo","keyset_cluster":"g","long_poll_ms":10000,"max_staleness_ms":15000}"#,
        )
        .unwrap();
        assert_eq!(bounded.max_staleness_ms, Some(15_000));
    }

    #[test]
    fn rejects_bad_configurations_with_a_reason() {
        let cases = [
            ("", "EOF"),
            (r#"{"org":"demo"}"#, "keyset_cluster"),
            (
                r#"{"org":"demo","keyset_cluster":"g","extra":1}"#,
                "unknown field",
            ),
            (r#"{"keyset_cluster":"g"}"#, "exactly one"),
            (
                r#"{"org":"a","org_from_authority":"{org}.x.app","keyset_cluster":"g"}"#,
                "exactly one",
            ),
            (r#"{"org":"Demo","keyset_cluster":"g"}"#, "must match"),
            (
                r#"{"org_from_authority":"x.app","keyset_cluster":"g"}"#,
                "{org}",
            ),
            (
                r#"{"org_from_authority":"{org}{org}.app","keyset_cluster":"g"}"#,
                "one {org}",
            ),
            (
                r#"{"org_from_authority":"a{org}.app","keyset_cluster":"g"}"#,
                "whole label",
            ),
            (r#"{"org":"demo","keyset_cluster":""}"#, "keyset_cluster"),
            (
                r#"{"org":"demo","keyset_cluster":"g","long_poll_ms":5}"#,
                "long_poll_ms",
            ),
            (
                r#"{"org":"demo","keyset_cluster":"g","keyset_path":"v1"}"#,
                "keyset_path",
            ),
            (
                r#"{"org":"demo","keyset_cluster":"g","realm":"a\"b"}"#,
                "realm",
            ),
            (
                r#"{"org":"demo","keyset_cluster":"g","long_poll_ms":10000,"max_staleness_ms":14999}"#,
                "at least long_poll_ms + 5000 (15000)",
            ),
        ];
        for (json, expected) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.0.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn body_policy_settings_compile() {
        let config = parse(
            r#"{"org":"demo","keyset_cluster":"g","mode":"audit","max_body_bytes":1024,
                "inspect_path_prefixes":["/api/mcp"],"deny_argument_names":["license_code"],
                "allow_argument_names":["auth_type"]}"#,
        )
        .unwrap();
        assert_eq!(config.mode, Mode::Audit);
        assert_eq!(config.max_body_bytes, 1024);
        assert!(config.inspects("/api/mcp?x=1"));
        assert!(!config.inspects("/health"));
        assert!(config.inspect.names.check("licenseCode").is_some());
        assert!(config.inspect.names.check("auth_type").is_none());
        assert!(config.inspect.names.check("password").is_some());
        let defaults = parse(r#"{"org":"demo","keyset_cluster":"g"}"#).unwrap();
        assert_eq!(defaults.mode, Mode::Enforce);
        assert_eq!(defaults.max_body_bytes, 4 << 20);
        assert!(defaults.inspects("/anything"));
    }

    #[test]
    fn org_from_authority_matches_whole_labels_only() {
        let config =
            parse(r#"{"org_from_authority":"{org}.armature.app","keyset_cluster":"g"}"#).unwrap();
        let org = |authority: &str| config.org.resolve(authority).map(|o| o.into_owned());
        assert_eq!(org("acme.armature.app"), Some("acme".into()));
        assert_eq!(org("ACME.Armature.App:443"), Some("acme".into()));
        assert_eq!(org("acme.armature.app.evil.com"), None);
        assert_eq!(org("a.b.armature.app"), None);
        assert_eq!(org(".armature.app"), None);
        assert_eq!(org("armature.app"), None);
        assert_eq!(org("acme_x.armature.app"), None);
    }

    #[test]
    fn value_formats_are_set_per_format_and_unknown_ones_refused() {
        let config = parse(
            r#"{"org":"demo","keyset_cluster":"g","value_formats":{"jwt":"off","aws_access_key_id":"audit","github_token":"enforce"}}"#,
        )
        .unwrap();
        let formats = &config.inspect.formats;
        assert_eq!(formats.action(Format::Jwt), FormatAction::Off);
        assert_eq!(formats.action(Format::AwsAccessKeyId), FormatAction::Audit);
        assert_eq!(formats.action(Format::GithubToken), FormatAction::Enforce);
        assert_eq!(
            formats.action(Format::PrivateKey),
            FormatAction::Enforce,
            "default"
        );
        let unknown =
            parse(r#"{"org":"demo","keyset_cluster":"g","value_formats":{"jwts":"off"}}"#);
        assert!(unknown.unwrap_err().0.contains("unknown format \"jwts\""));
        let bad = parse(r#"{"org":"demo","keyset_cluster":"g","value_formats":{"jwt":"block"}}"#);
        assert!(bad.is_err());
    }
}
