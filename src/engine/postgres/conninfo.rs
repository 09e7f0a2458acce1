//! Handing a connection string to PostgreSQL's programs without its password on their command line.
//!
//! Every local user can read any process's command line (`ps -eo args`, `/proc/PID/cmdline`), so a
//! `--dbname=postgres://bk:SECRET@db/app` given to `pg_dump`, `pg_basebackup`, `pg_restore` or
//! `pg_receivewal` would show the password for as long as the program runs. libpq reads the
//! password from `PGPASSWORD` in the environment as well, and a process's environment is readable
//! only by its own user and root (`/proc/PID/environ` is mode 0400). So the password is taken out of
//! the connection string, URL or keyword form, and travels in the child's environment.

use zeroize::Zeroizing;

/// A connection string split for a child process: what goes on its command line, and the password
/// that goes in its environment.
pub struct ChildConnInfo {
    conninfo: String,
    password: Option<Zeroizing<String>>,
}

impl ChildConnInfo {
    /// Splits `conninfo` (a `postgres://` URL or libpq's `key=value` form).
    pub fn new(conninfo: &str) -> Self {
        let trimmed = conninfo.trim();
        match trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            true => split_url(trimmed).unwrap_or_else(|| split_keywords(trimmed)),
            false => split_keywords(trimmed),
        }
    }

    /// The connection string without its password: safe on a command line.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// `--dbname=<conninfo without password>`.
    pub fn dbname_arg(&self) -> String {
        format!("--dbname={}", self.conninfo)
    }

    /// What to add to the child's environment (`Command::envs`): the password, if the connection
    /// string had one. Without one, the child inherits ours (`PGPASSWORD`, `PGPASSFILE`,
    /// `~/.pgpass` work as usual).
    pub fn env(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.password
            .as_ref()
            .map(|p| ("PGPASSWORD", p.as_str()))
            .into_iter()
    }
}

/// `conninfo` without the parameters `names` (URL query parameters or keywords), and their values:
/// for the settings this program applies itself rather than handing them to a client library that
/// does not know them (TLS's `sslmode=verify-full`, `sslrootcert`).
pub(crate) fn take_params(
    conninfo: &str,
    names: &[&str],
) -> (String, std::collections::BTreeMap<String, String>) {
    let trimmed = conninfo.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        return crate::engine::url_query::take_query_params(trimmed, names);
    }
    let mut taken = std::collections::BTreeMap::new();
    let mut kept = Vec::new();
    for (key, value) in keyword_pairs(trimmed) {
        match value {
            Some(value) if names.contains(&key.as_str()) => {
                taken.insert(key, value);
            }
            Some(value) => kept.push(format!("{key}={}", quote(&value))),
            None => kept.push(key),
        }
    }
    (kept.join(" "), taken)
}

/// `postgres://user:password@host/db?password=...`: by hand, because libpq accepts URLs that a
/// URL parser refuses (`postgres://u:p@/db?host=/var/run/postgresql`, several hosts).
fn split_url(text: &str) -> Option<ChildConnInfo> {
    let (scheme, rest) = text.split_once("://")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let decode = |v: &str| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_or_else(|_| v.to_owned(), |d| d.into_owned())
    };
    let mut password = None;
    let mut out = format!("{scheme}://");
    match before_query.rfind('@') {
        Some(at) => {
            let user_info = &before_query[..at];
            match user_info.split_once(':') {
                Some((user, secret)) => {
                    password = Some(Zeroizing::new(decode(secret)));
                    out.push_str(user);
                }
                None => out.push_str(user_info),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some((key, value)) if decode(key) == "password" => {
                    password = Some(Zeroizing::new(decode(value)));
                    false
                }
                _ => true,
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    Some(ChildConnInfo {
        conninfo: out,
        password,
    })
}

/// libpq's `key = value` form: values bare or in single quotes, `\` escaping the next character.
fn split_keywords(text: &str) -> ChildConnInfo {
    let mut kept = Vec::new();
    let mut password = None;
    for (key, value) in keyword_pairs(text) {
        match value {
            Some(value) if key.eq_ignore_ascii_case("password") => {
                password = Some(Zeroizing::new(value))
            }
            Some(value) => kept.push(format!("{key}={}", quote(&value))),
            None => kept.push(key),
        }
    }
    ChildConnInfo {
        conninfo: kept.join(" "),
        password,
    }
}

/// The pairs in order; a word without `=` is kept as it is, with no value.
fn keyword_pairs(text: &str) -> Vec<(String, Option<String>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_spaces(&mut i);
        if i >= chars.len() {
            break;
        }
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            key.push(chars[i]);
            i += 1;
        }
        skip_spaces(&mut i);
        if chars.get(i) != Some(&'=') {
            // Not a key=value pair: keep it whole, libpq will say what is wrong with it.
            pairs.push((key, None));
            continue;
        }
        i += 1;
        skip_spaces(&mut i);
        let mut value = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1; // the closing quote
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        pairs.push((key, Some(value)));
    }
    pairs
}

/// A value as libpq reads it back: quoted, with `\` and `'` escaped.
fn quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,".contains(c))
    {
        return value.to_owned();
    }
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> (String, Option<String>) {
        let c = ChildConnInfo::new(text);
        (
            c.conninfo.clone(),
            c.password.as_ref().map(|p| p.as_str().to_owned()),
        )
    }

    #[test]
    fn url_passwords_leave_the_url() {
        assert_eq!(
            split("postgres://bk:S%40cret@db:5432/app"),
            ("postgres://bk@db:5432/app".into(), Some("S@cret".into()))
        );
        assert_eq!(
            split("postgresql://bk@db/app?sslmode=require&password=x%20y&application_name=h"),
            (
                "postgresql://bk@db/app?sslmode=require&application_name=h".into(),
                Some("x y".into())
            )
        );
        assert_eq!(
            split("postgres://bk@db/app?password=only"),
            ("postgres://bk@db/app".into(), Some("only".into()))
        );
        assert_eq!(
            split("postgres://bk@db/app"),
            ("postgres://bk@db/app".into(), None)
        );
    }

    #[test]
    fn keyword_passwords_leave_the_string() {
        assert_eq!(
            split("host=db user=bk password=secret dbname=app"),
            ("host=db user=bk dbname=app".into(), Some("secret".into()))
        );
        assert_eq!(
            split(r"host = db password = 'it\'s two words' dbname='my app'"),
            (
                "host=db dbname='my app'".into(),
                Some("it's two words".into())
            )
        );
        assert_eq!(
            split("host=/tmp port=5433"),
            ("host=/tmp port=5433".into(), None)
        );
        // What is not a pair is passed on as it is, for libpq to judge.
        assert_eq!(split("nonsense"), ("nonsense".into(), None));
    }

    #[test]
    fn tls_settings_are_taken_out_of_either_form() {
        let (rest, taken) = take_params(
            "postgres://bk:pw@db/app?sslmode=verify-full&application_name=h&sslrootcert=%2Fca.pem",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(rest, "postgres://bk:pw@db/app?application_name=h");
        assert_eq!(taken["sslmode"], "verify-full");
        assert_eq!(taken["sslrootcert"], "/ca.pem");
        let (rest, taken) = take_params(
            "host=db sslmode = verify-ca sslrootcert='/my ca.pem' dbname=app",
            &["sslmode", "sslrootcert"],
        );
        assert_eq!(rest, "host=db dbname=app");
        assert_eq!(taken["sslrootcert"], "/my ca.pem");
        let (rest, taken) = take_params("postgres://db/app", &["sslmode"]);
        assert_eq!((rest.as_str(), taken.len()), ("postgres://db/app", 0));
    }

    #[test]
    fn socket_urls_split_too() {
        let (conninfo, password) = split("postgres://bk:pw@/app?host=/var/run/postgresql");
        assert!(!conninfo.contains("pw"), "{conninfo}");
        assert_eq!(password.as_deref(), Some("pw"));
    }
}
