//! TLS to MySQL and MariaDB, for this program's own sessions and for the client programs it runs
//! (`mariadb-dump`, `mariadb`, `mariadb-binlog`, `mariabackup`), from the URL's query:
//! `ssl-mode`, `ssl-ca`, and `ssl-cert` with `ssl-key` for a client certificate (`ssl_mode`,
//! `ssl_ca`, ... are the same). The modes are MySQL's `--ssl-mode`:
//!
//! | `ssl-mode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disabled` | never | - |
//! | `preferred` (the default) | when the server offers it | not checked |
//! | `required` | always | not checked, unless `ssl-ca` is given: then as `verify_ca` |
//! | `verify_ca` | always | signed by a CA of `ssl-ca` |
//! | `verify_identity` | always | signed by a CA of `ssl-ca`, and naming the host connected to |
//!
//! `ssl-ca` is a PEM file of CA certificates, or `system` for the system's trusted roots (the
//! verifying modes without `ssl-ca` use those too); giving it without `ssl-mode` means `verify_ca`,
//! as MySQL's clients take it. Files are read when the URL is parsed, so a missing or unreadable
//! one is named before anything connects.
//!
//! `verify_ca` checks the name too, for now: it fails closed, never open. MariaDB's client programs
//! insist on TLS only with `--ssl-verify-server-cert`, which checks the chain and the name
//! together (`--ssl` and `--ssl-ca` alone fall back to a plain session when the server offers no
//! TLS, so an attacker in the path could strip it), and the Rust driver's option to skip the name
//! does nothing with the rustls it is built with (mysql_async 0.37.1, its issue 404, fixed after
//! that release). MySQL's programs take `--ssl-mode` as it is.
//!
//! `required` is enforced in this program's own sessions, which come first in every job; MariaDB's
//! client programs, which cannot insist on TLS without checking the certificate, use it unchecked
//! when the server offers it. Against an attacker in the path, use `verify_identity`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Once;

use mysql_async::{ClientIdentity, SslOpts};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::MyError;

/// The URL query parameters this module applies.
pub(crate) const PARAMS: [&str; 8] = [
    "ssl-mode", "ssl_mode", "ssl-ca", "ssl_ca", "ssl-cert", "ssl_cert", "ssl-key", "ssl_key",
];

/// The client library's own TLS parameters: refused, so that one set of names decides.
pub(crate) const LIBRARY_PARAMS: [&str; 4] = [
    "require_ssl",
    "verify_ca",
    "verify_identity",
    "built_in_roots",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, MyError> {
        match text.to_ascii_lowercase().replace('-', "_").as_str() {
            "disabled" => Ok(Self::Disabled),
            "preferred" => Ok(Self::Preferred),
            "required" => Ok(Self::Required),
            "verify_ca" => Ok(Self::VerifyCa),
            "verify_identity" => Ok(Self::VerifyIdentity),
            _ => Err(MyError::Invalid(format!(
                "ssl-mode {text:?} is not one of disabled, preferred, required, verify_ca, verify_identity"
            ))),
        }
    }

    /// MySQL's spelling, for its programs' `--ssl-mode`.
    fn mysql_name(self) -> &'static str {
        match self {
            Self::Disabled => "DISABLED",
            Self::Preferred => "PREFERRED",
            Self::Required => "REQUIRED",
            Self::VerifyCa => "VERIFY_CA",
            Self::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone)]
enum Roots {
    File(PathBuf),
    System,
}

/// What TLS a server's sessions ask for.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    roots: Option<Roots>,
    client: Option<(PathBuf, PathBuf)>,
    /// The options for this program's own sessions, built once (`None`: no TLS).
    ssl_opts: Option<SslOpts>,
}

impl Tls {
    /// From the parameters taken out of a URL ([`PARAMS`]).
    pub(crate) fn new(params: &BTreeMap<String, String>) -> Result<Self, MyError> {
        let get = |name: &str| {
            params
                .get(name)
                .or_else(|| params.get(&name.replace('-', "_")))
                .cloned()
        };
        let roots = get("ssl-ca").map(|ca| match ca.as_str() {
            "system" => Roots::System,
            file => Roots::File(PathBuf::from(file)),
        });
        let mode = match (get("ssl-mode"), &roots) {
            (Some(mode), _) => SslMode::parse(&mode)?,
            (None, Some(_)) => SslMode::VerifyCa,
            (None, None) => SslMode::Preferred,
        };
        let mode = match (mode, &roots) {
            (SslMode::Required, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        };
        let client = match (get("ssl-cert"), get("ssl-key")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => {
                return Err(MyError::Invalid(
                    "ssl-cert and ssl-key go together: give both, or neither".into(),
                ))
            }
        };
        let mut tls = Self {
            mode,
            roots,
            client,
            ssl_opts: None,
        };
        tls.ssl_opts = tls.build_ssl_opts()?;
        Ok(tls)
    }

    /// No TLS at all (a private server this program started itself, on 127.0.0.1).
    pub(crate) fn disabled() -> Self {
        Self {
            mode: SslMode::Disabled,
            roots: None,
            client: None,
            ssl_opts: None,
        }
    }

    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }

    /// The client library's options for this program's own sessions; `None` for no TLS.
    pub(crate) fn ssl_opts(&self) -> Option<SslOpts> {
        self.ssl_opts.clone()
    }

    fn build_ssl_opts(&self) -> Result<Option<SslOpts>, MyError> {
        if self.mode == SslMode::Disabled {
            return Ok(None);
        }
        install_crypto_provider();
        let mut opts = SslOpts::default();
        match self.mode {
            // Unchecked; the library still wants some roots to build its (unused) verifier.
            SslMode::Disabled | SslMode::Preferred | SslMode::Required => {
                opts = opts
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true);
            }
            SslMode::VerifyCa | SslMode::VerifyIdentity => {
                let roots = match self.roots.as_ref().unwrap_or(&Roots::System) {
                    Roots::File(path) => vec![read_certificates("ssl-ca", path)?],
                    Roots::System => system_roots()?,
                };
                // Only the roots named here, never the list built into the library; and
                // verify_ca checks the name as well (see the module's notes).
                opts = opts
                    .with_disable_built_in_roots(true)
                    .with_root_certs(roots.into_iter().map(Into::into).collect());
            }
        }
        if let Some((cert, key)) = &self.client {
            let cert = read_certificates("ssl-cert", cert)?;
            let key = read("ssl-key", key)?;
            opts = opts.with_client_identity(Some(ClientIdentity::new(cert.into(), key.into())));
        }
        Ok(Some(opts))
    }

    /// The TLS options for a client program: MariaDB's (`--ssl`, `--ssl-verify-server-cert`) or
    /// MySQL's (`--ssl-mode`).
    pub(crate) fn program_args(&self, mariadb: bool) -> Vec<String> {
        let mut args = Vec::new();
        if mariadb {
            match self.mode {
                SslMode::Disabled => args.push("--skip-ssl".to_owned()),
                // The programs' default: TLS when the server offers it, unchecked.
                SslMode::Preferred => {}
                SslMode::Required => args.push("--ssl".to_owned()),
                SslMode::VerifyCa | SslMode::VerifyIdentity => {
                    args.push("--ssl".to_owned());
                    args.push("--ssl-verify-server-cert".to_owned());
                }
            }
        } else {
            args.push(format!("--ssl-mode={}", self.mode.mysql_name()));
        }
        if self.mode == SslMode::Disabled {
            return args;
        }
        if let Some(Roots::File(ca)) = &self.roots {
            args.push(format!("--ssl-ca={}", ca.display()));
        }
        if let Some((cert, key)) = &self.client {
            args.push(format!("--ssl-cert={}", cert.display()));
            args.push(format!("--ssl-key={}", key.display()));
        }
        args
    }
}

/// rustls is built with two crypto providers here (the cloud stores bring the second), and then
/// needs to be told which one a configuration without its own uses.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Already installed by someone else: theirs stands.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(field: &str, path: &std::path::Path) -> Result<Vec<u8>, MyError> {
    std::fs::read(path).map_err(|e| MyError::io(format!("{field} {}", path.display()), e))
}

/// A PEM file of certificates, checked to hold at least one.
fn read_certificates(field: &str, path: &std::path::Path) -> Result<Vec<u8>, MyError> {
    let bytes = read(field, path)?;
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        cert.map_err(|e| {
            MyError::Invalid(format!(
                "{field} {}: not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(MyError::Invalid(format!(
            "{field} {}: holds no PEM certificate",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The system's trusted roots, each in DER.
fn system_roots() -> Result<Vec<Vec<u8>>, MyError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(MyError::Invalid(
            "ssl-ca=system (or a verifying ssl-mode without ssl-ca): this system has no trusted root certificates"
                .into(),
        ));
    }
    Ok(found
        .certs
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(pairs: &[(&str, &str)]) -> Result<Tls, MyError> {
        Tls::new(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn modes_follow_mysql_clients() {
        assert_eq!(tls(&[]).unwrap().mode(), SslMode::Preferred);
        assert_eq!(
            tls(&[("ssl-mode", "DISABLED")]).unwrap().mode(),
            SslMode::Disabled
        );
        assert_eq!(
            tls(&[("ssl_mode", "verify-identity"), ("ssl-ca", "system")])
                .unwrap()
                .mode(),
            SslMode::VerifyIdentity
        );
        // A CA without a mode, or with `required`, is checked.
        assert_eq!(
            tls(&[("ssl-ca", "system")]).unwrap().mode(),
            SslMode::VerifyCa
        );
        assert_eq!(
            tls(&[("ssl-mode", "required"), ("ssl-ca", "system")])
                .unwrap()
                .mode(),
            SslMode::VerifyCa
        );
        let err = tls(&[("ssl-mode", "always")]).unwrap_err().to_string();
        assert!(
            err.contains("\"always\"") && err.contains("verify_identity"),
            "{err}"
        );
        let err = tls(&[("ssl-cert", "/c.pem")]).unwrap_err().to_string();
        assert!(err.contains("ssl-key"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let err = tls(&[("ssl-ca", "/nonexistent/ca.pem")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls(&[("ssl-ca", empty.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty.pem") && err.contains("no PEM"), "{err}");
    }

    #[test]
    fn program_arguments_for_both_families() {
        let t = tls(&[("ssl-mode", "verify_ca"), ("ssl-ca", "system")]).unwrap();
        assert_eq!(t.program_args(true), ["--ssl", "--ssl-verify-server-cert"]);
        assert_eq!(t.program_args(false), ["--ssl-mode=VERIFY_CA"]);
        let t = tls(&[("ssl-mode", "disabled")]).unwrap();
        assert_eq!(t.program_args(true), ["--skip-ssl"]);
        assert_eq!(t.program_args(false), ["--ssl-mode=DISABLED"]);
        assert!(tls(&[]).unwrap().program_args(true).is_empty());
    }
}
