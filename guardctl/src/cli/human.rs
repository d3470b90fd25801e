//! Human-facing formats for the CLI: durations such as `30d`, UTC timestamps, and the text
//! printed by `keys create`, `keys list`, `users list` and `audit list` without `--json`.

use super::client::{CreatedKey, ListedKey};
use crate::store::{AuditEvent, UserInfo};

/// Parses a key lifetime: a number of seconds, optionally followed by one unit
/// (`s`, `m`, `h`, `d`, `w`): `90s`, `15m`, `12h`, `30d`, `3600`. Zero is rejected.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "w" => 7 * 24 * 60 * 60,
        _ => return Err(duration_error(text)),
    };
    if digits.is_empty() {
        return Err(duration_error(text));
    }
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?} is too large"))?;
    let seconds = count
        .checked_mul(multiplier)
        .ok_or_else(|| format!("duration {text:?} is too large"))?;
    if seconds == 0 {
        return Err("duration must be longer than zero".to_string());
    }
    Ok(seconds)
}

fn duration_error(text: &str) -> String {
    format!(
        "invalid duration {text:?}: use a whole number with an optional unit s, m, h, d or w \
         (e.g. 90s, 15m, 12h, 30d)"
    )
}

/// Formats Unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn format_unix_utc(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The block printed after `keys create`: the token stands alone on its line for easy copying.
pub fn render_created(key: &CreatedKey) -> String {
    let expires = key.expires_at.map_or_else(
        || "never".to_string(),
        |at| format!("{} UTC", format_unix_utc(at)),
    );
    format!(
        "Created key {key_id}\n\
         \x20 org:     {org}\n\
         \x20 role:    {role}\n\
         \x20 user:    {user}\n\
         \x20 name:    {name}\n\
         \x20 expires: {expires}\n\
         \n\
         Token (shown only once; store it now, it cannot be retrieved later):\n\
         \n\
         {token}\n",
        key_id = key.key_id,
        org = key.org,
        role = key.role,
        user = key.user.as_deref().unwrap_or("- (service key)"),
        name = key.name,
        token = key.token,
    )
}

/// The table printed by `keys list`; times in UTC, keys already past their expiry marked. A
/// service key's user is `-`.
pub fn render_key_table(keys: &[ListedKey], now: i64) -> String {
    if keys.is_empty() {
        return "No keys.\n".to_string();
    }
    let header = [
        "KEY ID",
        "ORG",
        "ROLE",
        "USER",
        "NAME",
        "CREATED (UTC)",
        "EXPIRES (UTC)",
    ];
    let rows = keys.iter().map(|key| {
        let expires = match key.expires_at {
            None => "never".to_string(),
            Some(at) if at <= now => format!("{} (expired)", format_unix_utc(at)),
            Some(at) => format_unix_utc(at),
        };
        [
            key.key_id.clone(),
            key.org.clone(),
            key.role.clone(),
            key.user.clone().unwrap_or_else(|| "-".into()),
            key.name.clone(),
            format_unix_utc(key.created_at),
            expires,
        ]
    });
    render_table(header, rows)
}

/// The table printed by `users list`.
pub fn render_user_table(users: &[UserInfo]) -> String {
    if users.is_empty() {
        return "No users.\n".to_string();
    }
    let header = ["ORG", "NAME", "ROLE", "KEYS", "CREATED (UTC)"];
    let rows = users.iter().map(|user| {
        [
            user.org.clone(),
            user.name.clone(),
            user.role.clone(),
            user.keys.to_string(),
            format_unix_utc(user.created_at),
        ]
    });
    render_table(header, rows)
}

/// The table printed by `audit list`.
pub fn render_audit_table(events: &[AuditEvent]) -> String {
    if events.is_empty() {
        return "No audit events.\n".to_string();
    }
    let header = ["TIME (UTC)", "ACTOR", "ACTION", "OBJECT", "DETAIL"];
    let rows = events.iter().map(|event| {
        [
            format_unix_utc(event.at),
            event.actor.clone(),
            event.action.clone(),
            event.object.clone(),
            event.detail.clone(),
        ]
    });
    render_table(header, rows)
}

/// Left-aligned columns two spaces apart, as kubectl prints them.
fn render_table<const N: usize>(
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> String {
    let header = header.map(String::from);
    let rows: Vec<[String; N]> = rows.collect();
    let mut widths = [0usize; N];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30d"), Ok(2_592_000));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        assert_eq!(parse_duration("3600"), Ok(3600));
        assert_eq!(parse_duration(" 7d "), Ok(604_800));
        for bad in [
            "",
            "d",
            "0",
            "0d",
            "-5",
            "1.5h",
            "10x",
            "1h30m",
            "30 d",
            "D",
            "30D",
            "99999999999999999999",
            "999999999999999999w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn created_block_shows_the_token_once_with_a_warning() {
        let key = CreatedKey {
            key_id: "abcdefgh1234".into(),
            token: "amt_abcdefgh1234_secret".into(),
            org: "demo".into(),
            role: "admin".into(),
            user: Some("alice".into()),
            name: "ci".into(),
            created_at: 0,
            expires_at: Some(86_400),
        };
        let text = render_created(&key);
        assert_eq!(text.matches("amt_abcdefgh1234_secret").count(), 1);
        assert!(text.contains("\namt_abcdefgh1234_secret\n"));
        assert!(text.contains("shown only once"));
        assert!(text.contains("1970-01-02 00:00:00 UTC"));
        assert!(text.contains("  user:    alice\n"));
    }

    #[test]
    fn key_table() {
        let key = |id: &str, name: &str, expires_at| ListedKey {
            key_id: id.into(),
            org: "demo".into(),
            role: "admin".into(),
            user: (name == "ci").then(|| "alice".to_string()),
            name: name.into(),
            created_at: 0,
            expires_at,
        };
        let table = render_key_table(
            &[
                key("aaaaaaaa1111", "ci", None),
                key("bbbbbbbb2222", "ünïcode name", Some(60)),
            ],
            100,
        );
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("KEY ID        ORG   ROLE   USER   NAME"));
        assert!(lines[1].starts_with("aaaaaaaa1111  demo  admin  alice  ci "));
        assert!(lines[2].starts_with("bbbbbbbb2222  demo  admin  -      ünïcode name"));
        assert!(lines[1].ends_with("never"));
        assert!(lines[2].ends_with("1970-01-01 00:01:00 (expired)"));
        // Columns line up (counted in characters) even with multi-byte names.
        let column_of = |line: &str, text: &str| {
            let byte = line.find(text).unwrap_or(0);
            line[..byte].chars().count()
        };
        let created = column_of(lines[0], "CREATED");
        assert_eq!(column_of(lines[1], "1970"), created);
        assert_eq!(column_of(lines[2], "1970"), created);
        assert_eq!(render_key_table(&[], 0), "No keys.\n");
    }

    #[test]
    fn utc_times() {
        assert_eq!(format_unix_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_unix_utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_unix_utc(4_102_444_799), "2099-12-31 23:59:59");
        assert_eq!(format_unix_utc(-1), "1969-12-31 23:59:59");
    }
}
