//! TLS material: a local CA and a server certificate for `init`, and the rustls
//! server configuration `serve` uses.

use std::io::BufReader;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

use crate::error::{PublisherError, Result};

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

/// A server certificate signed by `ca`, valid for localhost, 127.0.0.1, ::1
/// and `extra_names`, and its key.
fn server_cert(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    extra_names: &[String],
) -> Result<(String, String)> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    names.extend(extra_names.iter().cloned());
    let server_key = KeyPair::generate().map_err(tls_err)?;
    let mut params = CertificateParams::new(names).map_err(tls_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Skycast publisher");
    let cert = params.signed_by(&server_key, ca, ca_key).map_err(tls_err)?;
    Ok((cert.pem(), server_key.serialize_pem()))
}

/// A fresh CA and a server certificate it signs, valid for localhost, 127.0.0.1,
/// ::1 and `extra_names`.
pub fn generate(extra_names: &[String]) -> Result<Material> {
    let ca_key = KeyPair::generate().map_err(tls_err)?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(tls_err)?;
    let (server_cert_pem, server_key_pem) = server_cert(&ca_cert, &ca_key, extra_names)?;
    Ok(Material {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server_cert_pem,
        server_key_pem,
    })
}

/// A new server certificate (and key) from the local CA whose key is
/// `ca_key_pem`: for a second site that players reach with the CA they pin.
pub fn issue(ca_key_pem: &str, extra_names: &[String]) -> Result<(String, String)> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| tls_err(format!("CA key unreadable: {e}")))?;
    let ca_cert = ca_params()?.self_signed(&ca_key).map_err(tls_err)?;
    server_cert(&ca_cert, &ca_key, extra_names)
}

pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("certificate PEM unreadable: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("no certificate found in the certificate PEM"));
    }
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem))
        .map_err(|e| tls_err(format!("key PEM unreadable: {e}")))?
        .ok_or_else(|| tls_err("no private key found in the key PEM"))?;
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
