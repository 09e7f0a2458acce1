//! Passwords out of text: the one function every message, error and log line goes through.
//!
//! Connection strings reach messages in every form users write them: URLs with user info
//! (`postgres://bk:SECRET@host/db`, `mysql://root:SECRET@db:3306`), a `password` query parameter
//! (`postgres://bk@host/db?password=SECRET`), and libpq's keyword form (`host=db password=SECRET`,
//! `password = 'two words'`). [`redact`] replaces the secret of each with `***`, wherever it stands
//! in a longer text, and leaves the rest readable. It errs on the side of hiding: a path that merely
//! looks like user info loses a few characters, a password never shows.

/// What replaces a secret.
pub const HIDDEN: &str = "***";

/// Keywords whose value is a secret (matched case-insensitively as whole words).
const SECRET_KEYWORDS: [&str; 5] = ["password", "pgpassword", "mysql_pwd", "passwd", "pwd"];

/// `text` with every password it holds replaced by `***`.
pub fn redact(text: &str) -> String {
    redact_keywords(&redact_user_info(text))
}

/// `scheme://user:SECRET@host` → `scheme://user:***@host`.
fn redact_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority runs to the end of the token: a password may hold '/', '?' or '#'
        // unencoded, so only whitespace and quotes end it; the user info ends at its last '@'.
        let token_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let token = &after[..token_end];
        match token.rfind('@') {
            Some(at) if token[..at].contains(':') => {
                let colon = token[..at].find(':').unwrap_or(at);
                out.push_str(&token[..=colon]);
                out.push_str(HIDDEN);
                out.push_str(&token[at..]);
            }
            _ => out.push_str(token),
        }
        rest = &after[token_end..];
    }
    out.push_str(rest);
    out
}

/// `password=SECRET`, `password = 'SECRET'`, `?password=SECRET&`, `"password": "SECRET"` → `***`.
fn redact_keywords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let Some(keyword) = SECRET_KEYWORDS
            .iter()
            .find(|k| lower.as_bytes()[i..].starts_with(k.as_bytes()) && starts_word(bytes, i))
        else {
            i += 1;
            continue;
        };
        let mut j = i + keyword.len();
        // An optional closing quote of a JSON/YAML key, spaces, then '=' or ':'.
        if matches!(bytes.get(j), Some(b'"' | b'\'')) {
            j += 1;
        }
        while matches!(bytes.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if !matches!(bytes.get(j), Some(b'=' | b':')) {
            i += keyword.len();
            continue;
        }
        j += 1;
        while matches!(bytes.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let value_start = j;
        let value_end = value_end(bytes, value_start);
        if value_end == value_start {
            i = j;
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(HIDDEN);
        copied = value_end;
        i = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether a keyword at `i` starts a word (so `PGPASSWORD` is not read as `password`).
fn starts_word(bytes: &[u8], i: usize) -> bool {
    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
}

/// Where a value starting at `start` ends: a quoted one at its closing quote (backslash escapes,
/// as libpq reads them), a bare one at whitespace or a separator.
fn value_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        Some(&quote @ (b'\'' | b'"')) => {
            let mut k = start + 1;
            while k < bytes.len() {
                match bytes[k] {
                    b'\\' => k += 2,
                    c if c == quote => return k + 1,
                    _ => k += 1,
                }
            }
            bytes.len()
        }
        _ => {
            let mut k = start;
            while k < bytes.len()
                && !bytes[k].is_ascii_whitespace()
                && !matches!(bytes[k], b'&' | b';' | b',' | b'}' | b')')
            {
                k += 1;
            }
            k
        }
    }
}

/// A writer that redacts what it writes: the log lines of `tracing` go through it, so a
/// connection string logged anywhere loses its password on the way out.
pub struct RedactingWriter<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One formatted event arrives in one write; a line is never split between two.
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "S3cr3t-pw";

    fn hides(text: &str) -> String {
        let out = redact(text);
        assert!(!out.contains(SECRET), "{text:?} became {out:?}");
        out
    }

    #[test]
    fn text_with_characters_of_several_bytes_is_redacted_without_a_panic() {
        // Found by the config fuzz target: a keyword looked for inside a two-byte character.
        let text = "repository:\n \u{70a}rl: s3://b/p\npassword=s\u{e9}cr\u{e9}t \u{1f600} pwd: 'd\\\u{e9}j\u{e0}'";
        let out = redact(text);
        assert!(
            !out.contains("s\u{e9}cr\u{e9}t") && !out.contains("j\u{e0}"),
            "{out}"
        );
        assert!(
            out.contains("\u{70a}rl") && out.contains("\u{1f600}"),
            "{out}"
        );
    }

    #[test]
    fn every_form_of_a_connection_string_loses_its_password() {
        let p = SECRET;
        assert_eq!(
            hides(&format!("postgres://bk:{p}@db.internal:5432/app")),
            "postgres://bk:***@db.internal:5432/app"
        );
        assert_eq!(
            hides(&format!(
                "postgres://bk@db/app?sslmode=require&password={p}&x=1"
            )),
            "postgres://bk@db/app?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            hides(&format!("host=db user=bk password={p} dbname=app")),
            "host=db user=bk password=*** dbname=app"
        );
        assert_eq!(
            hides(&format!("host=db password = '{p} with spaces' dbname=app")),
            "host=db password = *** dbname=app"
        );
        assert_eq!(
            hides(&format!(r"host=db PASSWORD='it\'s {p}' port=5432")),
            "host=db PASSWORD=*** port=5432"
        );
        assert_eq!(
            hides(&format!("mysql://root:{p}@mariadb-primary:3306/notes")),
            "mysql://root:***@mariadb-primary:3306/notes"
        );
        assert_eq!(
            hides(&format!("mariadb://root:{p}@h/notes")),
            "mariadb://root:***@h/notes"
        );
        assert_eq!(
            hides(&format!("PGPASSWORD={p} MYSQL_PWD={p}")),
            "PGPASSWORD=*** MYSQL_PWD=***"
        );
        assert_eq!(
            hides(&format!(r#"{{"url": "x", "password": "{p}"}}"#)),
            r#"{"url": "x", "password": ***}"#
        );
    }

    #[test]
    fn the_short_forms_engines_used_to_test_alone() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("host=h password=secret"), "host=h password=***");
        assert_eq!(
            redact("postgres://u@h/db?password=secret"),
            "postgres://u@h/db?password=***"
        );
    }

    #[test]
    fn passwords_hide_inside_longer_messages_and_odd_characters() {
        let p = SECRET;
        hides(&format!(
            "config heirloom.yaml: sources.a.url: \"postgres://u:{p}@h/db\" is not a URL: invalid port"
        ));
        // Unencoded '/', '@' and '?' in a password.
        hides(&format!("postgres://u:a/{p}@h/db"));
        hides(&format!("postgres://u:{p}@@h/db"));
        hides(&format!("mysql://u:?{p}#@h:3306"));
        // Two strings in one message.
        let out = hides(&format!(
            "copying from host=a password={p} into postgres://b:{p}@c/d failed"
        ));
        assert_eq!(
            out,
            "copying from host=a password=*** into postgres://b:***@c/d failed"
        );
    }

    #[test]
    fn text_without_passwords_is_unchanged() {
        for text in [
            "postgres://bk@db/app",
            "s3://bucket/prefix",
            "host=db user=bk dbname=app",
            "the password is wrong",
            "password authentication failed for user \"bk\"",
            "wrote 3 files: a://b",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
