//! Taking settings this program applies itself out of a database URL's query, before the URL goes
//! to a client library that would refuse them or not know them (TLS's `sslmode`, `ssl-ca`, ...).

use std::collections::BTreeMap;

/// `url` without the query parameters `names`, and their percent-decoded values. The rest of the
/// URL is left exactly as given.
pub(crate) fn take_query_params(url: &str, names: &[&str]) -> (String, BTreeMap<String, String>) {
    let mut taken = BTreeMap::new();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), taken);
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key);
            if names.contains(&key.as_str()) {
                taken.insert(key, decode(value));
                false
            } else {
                true
            }
        })
        .collect();
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    (rest, taken)
}

fn decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8()
        .map_or_else(|_| v.to_owned(), |d| d.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_the_named_parameters_and_decodes_them() {
        let (rest, taken) = take_query_params(
            "mysql://u:p@h:3306/db?ssl-mode=VERIFY_IDENTITY&stmt_cache_size=10&ssl-ca=%2Fetc%2Fca.pem",
            &["ssl-mode", "ssl-ca"],
        );
        assert_eq!(rest, "mysql://u:p@h:3306/db?stmt_cache_size=10");
        assert_eq!(taken["ssl-mode"], "VERIFY_IDENTITY");
        assert_eq!(taken["ssl-ca"], "/etc/ca.pem");
        let (rest, taken) = take_query_params("mysql://h/db?ssl-mode=disabled", &["ssl-mode"]);
        assert_eq!(rest, "mysql://h/db");
        assert_eq!(taken.len(), 1);
        assert_eq!(take_query_params("mysql://h/db", &["x"]).0, "mysql://h/db");
    }
}
