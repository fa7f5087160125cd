//! `oneclick admin config check`: loads the settings exactly as `serve` does (so an invalid value
//! has already failed with its key named) and prints what the service will connect to and as whom
//! — NATS URL(s), the NATS identity, TLS, the database — never a secret: passwords, tokens and
//! seeds are named, not shown, and a database URL's password is masked.

use crate::config::Settings;

/// The report, one `key: value` line each (tests and scripts grep it).
pub fn report(settings: &Settings) -> String {
    let nats = &settings.nats;
    let mut lines = vec![
        "configuration: valid".to_string(),
        format!("nats.url: {}", nats.url),
        format!("nats.identity: {}", nats.identity()),
        format!("nats.tls: {}", nats.tls_description()),
        format!("database: {}", mask_password(&settings.database.url)),
    ];
    let keys = match (&settings.keys.file, &settings.keys.master_keys) {
        (Some(file), _) => format!("key file {}", file.display()),
        (None, Some(_)) => "keys.master_keys (environment)".to_string(),
        (None, None) => "none configured".to_string(),
    };
    lines.push(format!("keys: {keys}"));
    lines.join("\n")
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!(
                "{scheme}://{user}{masked}@{host}{}",
                mask_query_password(tail)
            )
        }
        None => format!("{scheme}://{authority}{}", mask_query_password(tail)),
    }
}

/// libpq also takes `?password=…`.
fn mask_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oneclick_actors::engine::requests::SecretString;

    #[test]
    fn the_report_names_the_nats_user_and_never_prints_a_password() {
        let mut settings = Settings::default();
        settings.nats.user = Some("oneclick".into());
        settings.nats.password = Some(SecretString::new("natssecret42"));
        settings.database.url =
            "postgres://oneclick:pgsecret42@postgres:5432/oneclick?sslmode=verify-full&password=pgsecret42".into();
        let report = report(&settings);
        assert!(
            report.contains(r#"nats.identity: user "oneclick" with a password"#),
            "{report}"
        );
        assert!(
            report.contains(
                "postgres://oneclick:***@postgres:5432/oneclick?sslmode=verify-full&password=***"
            ),
            "{report}"
        );
        assert!(!report.contains("secret42"), "{report}");
    }

    #[test]
    fn a_token_is_named_but_not_shown() {
        let mut settings = Settings::default();
        settings.nats.token = Some(SecretString::new("tok-secret-42"));
        let report = report(&settings);
        assert!(report.contains("nats.identity: a token"), "{report}");
        assert!(!report.contains("tok-secret-42"), "{report}");
    }
}
