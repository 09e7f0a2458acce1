//! Source names: what a backup, a WAL archive or a binlog chain belongs to.
//!
//! A source name becomes part of object keys (`wal/<source>/...`, `binlog/<source>/...`), and on a
//! file:// repository part of a path, so it is parsed once at the edge (command-line flags, config
//! keys, manifests read back) into a type that cannot hold a bad value: 1 to 128 ASCII letters,
//! digits, `-`, `_` and `.`, not starting with `.`. No `/`, so no name can leave its folder, and no
//! `.` or `..`.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The rule, as messages state it.
pub const SOURCE_NAME_RULE: &str =
    "1-128 ASCII letters, digits, '-', '_' and '.', not starting with '.'";

/// A valid source name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceName(String);

impl SourceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SourceName {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !name.starts_with('.');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "{name:?} is not a valid source name: a source name is {SOURCE_NAME_RULE}"
            ))
        }
    }
}

impl TryFrom<String> for SourceName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<SourceName> for String {
    fn from(name: SourceName) -> String {
        name.0
    }
}

impl Deref for SourceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SourceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for SourceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl PartialEq<str> for SourceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SourceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_folder_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../../escaped",
            "a/b",
            "/abs",
            ".hidden",
            "a\\b",
            "a b",
            "tab\t",
            "new\nline",
            "é",
            &"x".repeat(129),
        ] {
            let err = bad.parse::<SourceName>().unwrap_err();
            assert!(err.contains(SOURCE_NAME_RULE), "{bad:?}: {err}");
        }
        for good in ["prod-pg", "notes_db", "a.b", "X1", &"x".repeat(128)] {
            assert_eq!(good.parse::<SourceName>().unwrap().as_str(), good);
        }
    }

    #[test]
    fn a_bad_name_in_json_is_refused() {
        assert!(serde_json::from_str::<SourceName>("\"../x\"").is_err());
        assert_eq!(
            serde_json::from_str::<SourceName>("\"app\"")
                .unwrap()
                .as_str(),
            "app"
        );
    }
}
