//! TLS material: a local CA and server certificates from it (`init`, `tls
//! issue`, `tls renew`, `tls rotate-ca`), and the rustls server configuration
//! `serve` uses, which reloads a renewed certificate without a restart.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rustls::sign::CertifiedKey;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::error::{PublisherError, Result};
use crate::stamp::FileStamp;

pub struct Material {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

fn tls_err(e: impl std::fmt::Display) -> PublisherError {
    PublisherError::Tls(e.to_string())
}

/// The local CA's parameters: the same every time, so the CA certificate made
/// again from its key names the same issuer and key as the one players pin.
fn ca_params() -> Result<CertificateParams> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Skycast local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(ca_params)
}

/// How long a server certificate is valid; `serve` renews it (`tls renew`)
/// when less than a third of that is left.
pub const SERVER_CERT_DAYS: i64 = 90;
/// The names every server certificate holds, besides the extra ones.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(tls_err)
}

/// A server certificate signed by `ca`, valid for localhost, 127.0.0.1, ::1
/// and `extra_names` from a day before `now` for [`SERVER_CERT_DAYS`], and its key.
fn server_cert(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    extra_names: &[String],
    now: DateTime<Utc>,
) -> Result<(String, String)> {
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(
        extra_names
            .iter()
            .filter(|n| !DEFAULT_NAMES.contains(&n.as_str()))
            .cloned(),
    );
    let server_key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(names).map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Skycast publisher");
    params.not_before = offset(now - chrono::Duration::days(1))?;
    params.not_after = offset(now + chrono::Duration::days(SERVER_CERT_DAYS))?;
    let cert = params.signed_by(&server_key, ca, ca_key).map_err(tls_err)?;
    Ok((cert.pem(), server_key.serialize_pem()))
}

/// A fresh CA and a server certificate it signs, valid for localhost, 127.0.0.1,
/// ::1 and `extra_names`.
pub fn generate(extra_names: &[String], now: DateTime<Utc>) -> Result<Material> {
    let (ca_cert_pem, ca_key_pem) = new_ca()?;
    let (server_cert_pem, server_key_pem) = issue(&ca_key_pem, extra_names, now)?;
    Ok(Material {
        ca_cert_pem,
        ca_key_pem,
        server_cert_pem,
        server_key_pem,
    })
}

/// A new local CA: its certificate and its key (PEM).
pub fn new_ca() -> Result<(String, String)> {
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(tls_err)?;
    Ok((ca_cert.pem(), ca_key.serialize_pem()))
}

/// A new server certificate (and key) from the local CA whose key is
/// `ca_key_pem`: for a second site that players reach with the CA they pin.
pub fn issue(ca_key_pem: &str, extra_names: &[String], now: DateTime<Utc>) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| tls_err(format!("CA key unreadable: {e}")))?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(tls_err)?;
    server_cert(&ca_cert, &ca_key, extra_names, now)
}

/// The CA whose key is `new_ca_key_pem`, certified by the CA whose key is
/// `old_ca_key_pem` (a cross-certificate, PEM): served after the server's own
/// certificate, it lets a player that still trusts only the old CA reach a
/// server whose certificate the new CA issued (leaf → new CA → old CA), while
/// players that learned the new CA through the trust root stop at the new one.
pub fn cross_certificate(new_ca_key_pem: &str, old_ca_key_pem: &str) -> Result<String> {
    let unreadable = |e: rcgen::Error| tls_err(format!("CA key unreadable: {e}"));
    let new_key = KeyPair::from_pem(new_ca_key_pem).map_err(unreadable)?;
    let old_key = KeyPair::from_pem(old_ca_key_pem).map_err(unreadable)?;
    let old_ca = ca_params()?.self_signed(&old_key).map_err(tls_err)?;
    let cross = ca_params()?
        .signed_by(&new_key, &old_ca, &old_key)
        .map_err(tls_err)?;
    Ok(cross.pem())
}

/// When the certificate in `pem` stops being valid, and the names it holds.
pub fn certificate_info(pem: &str) -> Result<(DateTime<Utc>, Vec<String>)> {
    let params = CertificateParams::from_ca_cert_pem(pem)
        .map_err(|e| tls_err(format!("certificate unreadable: {e}")))?;
    let not_after = DateTime::from_timestamp(params.not_after.unix_timestamp(), 0)
        .ok_or_else(|| tls_err("certificate expiry out of range"))?;
    let names = params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            rcgen::SanType::DnsName(name) => Some(name.as_str().to_string()),
            rcgen::SanType::IpAddress(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    Ok((not_after, names))
}

/// Whether a certificate valid until `not_after` is due for renewal at `now`:
/// less than a third of [`SERVER_CERT_DAYS`] left.
pub fn renewal_due(not_after: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    not_after - now < chrono::Duration::days(SERVER_CERT_DAYS) / 3
}

/// The server's certificate, read again from its files when they change: a
/// `tls renew` (by `serve`'s own job or the CLI) takes effect at the next TLS
/// handshake, with no restart. A pair that does not load (a half-written
/// renewal) keeps the one in use, and is tried again at the next handshake.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<(Option<FileStamp>, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ReloadingCert> {
        let stamp = stamp_of(cert_path, key_path);
        let key = certified_key(cert_path, key_path)?;
        Ok(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new((stamp, key)),
        })
    }

    fn refresh(&self) {
        let stamp = stamp_of(&self.cert_path, &self.key_path);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == stamp {
            return;
        }
        match certified_key(&self.cert_path, &self.key_path) {
            Ok(key) => {
                tracing::info!(path = %self.cert_path.display(), "server certificate reloaded");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (stamp, key);
            }
            Err(e) => tracing::warn!(error = %e, "new server certificate not loaded: keeping the one in use"),
        }
    }
}

impl rustls::server::ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone())
    }
}

/// Both files' stamps, folded into the certificate's (the key changes with it).
fn stamp_of(cert: &Path, key: &Path) -> Option<FileStamp> {
    FileStamp::of(cert).zip(FileStamp::of(key)).map(|(c, _)| c)
}

fn certified_key(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>> {
    let cert_pem = std::fs::read(cert_path).map_err(PublisherError::io("read", cert_path))?;
    let key_pem = std::fs::read(key_path).map_err(PublisherError::io("read", key_path))?;
    let (certs, key) = parse_pair(&cert_pem, &key_pem)?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| tls_err(format!("{}: {e}", key_path.display())))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        tls_err(format!(
            "{} does not match {}: {e}",
            key_path.display(),
            cert_path.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

type Pair = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("certificate PEM unreadable: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate found in the certificate PEM"));
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem))
        .map_err(|e| tls_err(format!("key PEM unreadable: {e}")))?
        .ok_or_else(|| tls_err("no private key found in the key PEM"))?;
    Ok((certs, key))
}

/// `serve`'s TLS configuration over a [`ReloadingCert`] of these files.
pub fn reloading_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let resolver = Arc::new(ReloadingCert::load(cert_path, key_path)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    let (certs, key) = parse_pair(cert_pem, key_pem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `sha256:` and the lower-case hex SHA-256 of the DER of the first
/// certificate in `pem`: the CA fingerprint `player enroll` shows and
/// `skycast-puller enroll` checks.
pub fn fingerprint_of_pem(pem: &[u8]) -> Result<String> {
    use sha2::Digest;
    let der = rustls_pemfile::certs(&mut BufReader::new(pem))
        .next()
        .ok_or_else(|| PublisherError::Tls("the CA file holds no certificate".into()))?
        .map_err(tls_err)?;
    Ok(format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(der.as_ref()))
    ))
}
