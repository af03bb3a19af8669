//! TLS for Sextant's listeners (rustls with the ring provider): the certificate and key come
//! from PEM files named in `[tls]`, are read again when either file changes (checked every
//! `reload_seconds`), and may be joined by a CA whose client certificates are verified.
//!
//! A reload that fails (a half-written file, a key that does not match) keeps the previous
//! certificate and logs why; connections already open keep the configuration they started
//! with. Client certificates: with `client_auth = "ingest"` a certificate is asked for but not
//! required at the handshake (a presented one that does not chain to the CA is refused there),
//! and the ingest routes refuse a connection without one; with `"all"` every connection must
//! present one.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `[tls]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM (leaf first).
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that sign client certificates. Needed by `client_auth`.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Which connections must present a client certificate signed by `client_ca_file`:
    /// `none` (default), `ingest` (the ingest routes and TLS syslog), `all`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// The files are checked for changes this often, in seconds. Default 10.
    #[serde(default = "default_reload_seconds")]
    pub reload_seconds: u64,
}

fn default_reload_seconds() -> u64 {
    10
}

/// Who must show a client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    Ingest,
    All,
}

/// A verified client certificate, attached to the requests of its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 of the leaf certificate, hex.
    pub fingerprint: String,
}

/// The live TLS configuration of every listener.
pub struct Tls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.settings.cert_file)
            .finish()
    }
}

impl Tls {
    /// Reads the files; any problem is named.
    pub fn load(settings: TlsSettings) -> Result<Arc<Tls>, String> {
        if settings.client_auth != ClientAuth::None && settings.client_ca_file.is_none() {
            return Err("`tls.client_auth` needs `tls.client_ca_file`".to_owned());
        }
        if settings.reload_seconds == 0 {
            return Err("`tls.reload_seconds` must be at least 1".to_owned());
        }
        let config = build(&settings)?;
        let stamps = stamps(&settings);
        Ok(Arc::new(Tls {
            settings,
            current: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The configuration new connections use.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().clone())
    }

    /// Must a request to an ingest route come with a client certificate?
    pub fn ingest_needs_client_certificate(&self) -> bool {
        self.settings.client_auth != ClientAuth::None
    }

    /// Reads the files again if one changed; `Ok(true)` when the new ones are in use.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let now = stamps(&self.settings);
        if *self.stamps.lock() == now {
            return Ok(false);
        }
        // Remember the stamps even if the files do not load, so one bad write is reported
        // once, not every check; the next change is tried again.
        *self.stamps.lock() = now;
        let config = build(&self.settings)?;
        *self.current.write() = Arc::new(config);
        Ok(true)
    }

    /// Checks the files every `reload_seconds`, forever.
    pub async fn watch(self: Arc<Tls>) {
        let period = Duration::from_secs(self.settings.reload_seconds);
        loop {
            tokio::time::sleep(period).await;
            match self.reload_if_changed() {
                Ok(true) => tracing::info!(
                    cert = %self.settings.cert_file.display(),
                    "TLS certificate reloaded"
                ),
                Ok(false) => {}
                Err(err) => {
                    tracing::error!(error = %err, "TLS files changed but cannot be used; keeping the previous ones")
                }
            }
        }
    }
}

/// The verified client certificate of a finished handshake, if one was shown.
pub fn client_certificate(connection: &rustls::ServerConnection) -> Option<ClientCertificate> {
    let leaf = connection.peer_certificates()?.first()?;
    Some(ClientCertificate {
        fingerprint: hex::encode(Sha256::digest(leaf.as_ref())),
    })
}

fn files(settings: &TlsSettings) -> Vec<&Path> {
    let mut files = vec![settings.cert_file.as_path(), settings.key_file.as_path()];
    files.extend(settings.client_ca_file.as_deref());
    files
}

fn stamps(settings: &TlsSettings) -> Vec<Option<(SystemTime, u64)>> {
    files(settings)
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

fn read_error(what: &str, path: &Path, err: impl std::fmt::Display) -> String {
    format!("cannot read the TLS {what} `{}`: {err}", path.display())
}

fn certificates(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(what, path, e))?;
    if certs.is_empty() {
        return Err(read_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn build(settings: &TlsSettings) -> Result<ServerConfig, String> {
    let chain = certificates("certificate", &settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| read_error("key", &settings.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match (&settings.client_ca_file, settings.client_auth) {
        (Some(ca_file), client_auth) if client_auth != ClientAuth::None => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("client CA", ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| read_error("client CA", ca_file, e))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if client_auth == ClientAuth::All {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| read_error("client CA", ca_file, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "TLS certificate `{}` and key `{}` do not make a pair: {e}",
            settings.cert_file.display(),
            settings.key_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// An error for listeners that must not start: the address is not loopback and has no TLS.
pub fn check_plaintext(what: &str, addr: std::net::SocketAddr, allowed: bool) -> io::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if allowed {
        tracing::warn!(%addr, "{what} listens without TLS on a non-loopback address (--insecure-listen): tokens and telemetry cross the network in the clear");
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{what} would listen on {addr} without TLS, so tokens and telemetry would cross the \
             network in the clear; configure `[tls]` or pass `--insecure-listen`"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, PEM.
    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: None,
            client_auth: ClientAuth::None,
            reload_seconds: 1,
        }
    }

    fn served(tls: &Tls) -> Arc<ServerConfig> {
        tls.current.read().clone()
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_at_load_and_at_reload() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let (cert, key) = self_signed();
        let (other_cert, other_key) = self_signed();
        std::fs::write(&settings.cert_file, &cert).unwrap();
        std::fs::write(&settings.key_file, &other_key).unwrap();
        let err = Tls::load(settings.clone()).unwrap_err();
        assert!(err.contains("do not make a pair"), "{err}");

        std::fs::write(&settings.key_file, &key).unwrap();
        let tls = Tls::load(settings.clone()).unwrap();
        assert_eq!(tls.reload_if_changed(), Ok(false));
        let before = served(&tls);
        // A renewal half done: the new certificate is written, its key not yet.
        std::fs::write(&settings.cert_file, &other_cert).unwrap();
        let err = tls.reload_if_changed().unwrap_err();
        assert!(err.contains("do not make a pair"), "{err}");
        assert!(Arc::ptr_eq(&before, &served(&tls)), "the old pair is kept");
        // The failure is reported once, not at every check.
        assert_eq!(tls.reload_if_changed(), Ok(false));
        // The key arrives: the new pair is used.
        std::fs::write(&settings.key_file, &other_key).unwrap();
        assert_eq!(tls.reload_if_changed(), Ok(true));
        assert!(!Arc::ptr_eq(&before, &served(&tls)));
    }

    #[test]
    fn missing_files_and_bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path());
        let err = Tls::load(settings.clone()).unwrap_err();
        assert!(err.contains("server.pem"), "{err}");
        let (cert, key) = self_signed();
        std::fs::write(&settings.cert_file, &cert).unwrap();
        std::fs::write(&settings.key_file, "not a key").unwrap();
        let err = Tls::load(settings.clone()).unwrap_err();
        assert!(err.contains("server.key"), "{err}");
        std::fs::write(&settings.key_file, &key).unwrap();
        let needs_ca = TlsSettings {
            client_auth: ClientAuth::Ingest,
            ..settings.clone()
        };
        let err = Tls::load(needs_ca).unwrap_err();
        assert!(err.contains("client_ca_file"), "{err}");
        let never = TlsSettings {
            reload_seconds: 0,
            ..settings
        };
        assert!(Tls::load(never).unwrap_err().contains("reload_seconds"));
    }
}
