//! TLS to PostgreSQL for this program's own sessions, as libpq gives it to PostgreSQL's programs:
//! `sslmode` and `sslrootcert` (and `sslcert`/`sslkey` for a client certificate) from the
//! connection string, else from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (the default) | when the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given: then as `verify-ca` |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` |
//! | `verify-full` | always | signed by a CA of `sslrootcert`, and naming the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the system's trusted roots; for
//! the verifying modes without it, `~/.postgresql/root.crt` as libpq reads it. (`allow` tries TLS
//! first, as `prefer` does: the server decides.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;

use super::PgError;

/// The connection-string parameters this module applies.
pub(crate) const PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What TLS a session asks for.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    mode: Mode,
    root_cert: Option<String>,
    client: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    /// From the parameters taken out of a connection string, then the environment.
    pub(crate) fn new(
        params: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, PgError> {
        let get = |name: &str, var: &str| params.get(name).cloned().or_else(|| env(var));
        let mode = match get("sslmode", "PGSSLMODE").as_deref() {
            None | Some("prefer") | Some("allow") => Mode::Prefer,
            Some("disable") => Mode::Disable,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some(other) => {
                return Err(PgError::Invalid(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        };
        let root_cert = get("sslrootcert", "PGSSLROOTCERT");
        let mode = match (mode, &root_cert) {
            // libpq: require with a root certificate checks the chain, as verify-ca.
            (Mode::Require, Some(_)) => Mode::VerifyCa,
            (mode, _) => mode,
        };
        let client = match (get("sslcert", "PGSSLCERT"), get("sslkey", "PGSSLKEY")) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            _ => {
                return Err(PgError::Invalid(
                    "sslcert and sslkey go together: a client certificate needs its key".into(),
                ))
            }
        };
        Ok(Self {
            mode,
            root_cert,
            client,
        })
    }

    /// The mode tokio-postgres applies: whether TLS is tried, and whether it is required.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The rustls configuration: whom it trusts and how much it checks.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Invalid(format!("TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            Mode::Disable | Mode::Prefer | Mode::Require => Arc::new(Unchecked(provider.clone())),
            Mode::VerifyCa | Mode::VerifyFull => {
                let roots = self.roots()?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| PgError::Invalid(format!("TLS: {e}")))?;
                match self.mode {
                    Mode::VerifyFull => webpki,
                    _ => Arc::new(AnyName(webpki)),
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        match &self.client {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| PgError::Invalid(format!("sslkey {}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| PgError::Invalid(format!("sslcert/sslkey: {e}")))
            }
        }
    }

    fn roots(&self) -> Result<RootCertStore, PgError> {
        let mut roots = RootCertStore::empty();
        let path = match self.root_cert.as_deref() {
            Some("system") => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(PgError::Invalid(
                        "sslrootcert=system: this system has no trusted root certificates".into(),
                    ));
                }
                return Ok(roots);
            }
            Some(path) => PathBuf::from(path),
            None => std::env::var_os("HOME")
                .map(|home| Path::new(&home).join(".postgresql/root.crt"))
                .ok_or_else(|| {
                    PgError::Invalid(
                        "sslmode verify-ca and verify-full need sslrootcert (no home directory for ~/.postgresql/root.crt)"
                            .into(),
                    )
                })?,
        };
        for cert in read_certs(&path)? {
            roots
                .add(cert)
                .map_err(|e| PgError::Invalid(format!("sslrootcert {}: {e}", path.display())))?;
        }
        Ok(roots)
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PgError> {
    let bad = |why: String| PgError::Invalid(format!("{}: {why}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// `prefer` and `require` without a root certificate: encrypted, but the server is not
/// authenticated, as libpq does. The handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not compared
/// with the host.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(pairs: &[(&str, &str)], env: &[(&str, &str)]) -> Result<Tls, PgError> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tls::new(&params, |k| env.get(k).cloned())
    }

    #[test]
    fn modes_follow_libpq() {
        assert_eq!(tls(&[], &[]).unwrap().mode, Mode::Prefer);
        assert_eq!(
            tls(&[("sslmode", "allow")], &[]).unwrap().mode,
            Mode::Prefer
        );
        assert_eq!(
            tls(&[], &[("PGSSLMODE", "disable")]).unwrap().mode,
            Mode::Disable
        );
        // The connection string wins over the environment.
        let t = tls(&[("sslmode", "verify-full")], &[("PGSSLMODE", "disable")]).unwrap();
        assert_eq!((t.mode, t.ssl_mode()), (Mode::VerifyFull, SslMode::Require));
        let t = tls(&[("sslmode", "require"), ("sslrootcert", "/ca.pem")], &[]).unwrap();
        assert_eq!(t.mode, Mode::VerifyCa);
        let err = tls(&[("sslmode", "verify_full")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"verify_full\" is not one of"), "{err}");
        let err = tls(&[("sslcert", "/c.pem")], &[]).unwrap_err().to_string();
        assert!(err.contains("sslcert and sslkey go together"), "{err}");
    }

    #[test]
    fn a_root_certificate_that_is_not_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let t = tls(
            &[
                ("sslmode", "verify-full"),
                ("sslrootcert", path.to_str().unwrap()),
            ],
            &[],
        )
        .unwrap();
        let err = t.client_config().unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
