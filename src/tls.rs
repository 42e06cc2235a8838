//! PubkyTLS: TLS 1.3 where the server's "certificate" is an RFC 7250 raw public key, the
//! homeserver's own ed25519 key. Native SDKs resolve the homeserver through pkarr and accept
//! the handshake only if the presented key is the one the record was signed with, so no CA
//! is involved. rustls with the ring provider; no ALPN, so clients speak HTTP/1.1.
//!
//! Server names: none, the homeserver key, or `_pubky.<user key>` (the forms the SDK sends).
//! Anything else is refused during the handshake, before any HTTP is read.
//!
//! The configs of both sides live here, below every user of them (the listeners, the relay
//! link, the client of another homeserver); the accept side of the HTTP server is
//! `http::tls::PubkyTls`.

use std::sync::Arc;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use rustls::crypto::ring::sign::any_eddsa_type;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::pubkey::PublicKey;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The 44-byte SubjectPublicKeyInfo of an ed25519 public key: what PubkyTLS presents.
pub fn ed25519_spki(key: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(44);
    v.extend_from_slice(&ED25519_SPKI_PREFIX);
    v.extend_from_slice(key);
    v
}

#[derive(Debug)]
pub struct TlsConfigError(String);

impl std::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PubkyTLS configuration: {}", self.0)
    }
}

impl std::error::Error for TlsConfigError {}

/// Presents the homeserver key for acceptable server names, nothing otherwise.
#[derive(Debug)]
struct RawKeyResolver {
    key: Arc<CertifiedKey>,
    homeserver: PublicKey,
}

/// Whether a PubkyTLS client may ask for `name` (the SNI): absent, the homeserver's key,
/// or `_pubky.<key>` of any user (users are addressed through their `_pubky` record).
pub fn server_name_allowed(name: Option<&str>, homeserver: &PublicKey) -> bool {
    let Some(name) = name else {
        return true;
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if PublicKey::parse_z32(name).ok().as_ref() == Some(homeserver) {
        return true;
    }
    match name.strip_prefix("_pubky.") {
        Some(user) => PublicKey::parse_z32(user).is_ok(),
        None => false,
    }
}

impl ResolvesServerCert for RawKeyResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if server_name_allowed(hello.server_name(), &self.homeserver) {
            Some(self.key.clone())
        } else {
            tracing::debug!(sni = ?hello.server_name(), "PubkyTLS: unknown server name refused");
            None
        }
    }

    fn only_raw_public_keys(&self) -> bool {
        true
    }
}

/// The cryptography PubkyTLS needs and nothing else: the TLS 1.3 cipher suites, X25519 key
/// exchange, and ed25519 (the only key a homeserver has) for signatures. ring's default
/// provider also brings NIST P-256/P-384 key exchange and ECDSA/RSA verification, whose
/// tables and code are about 170 KiB of a board binary that no PubkyTLS peer would use.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as suite;
    static ED25519_ONLY: rustls::crypto::WebPkiSupportedAlgorithms =
        rustls::crypto::WebPkiSupportedAlgorithms {
            all: &[webpki::ring::ED25519],
            mapping: &[(rustls::SignatureScheme::ED25519, &[webpki::ring::ED25519])],
        };
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            suite::TLS13_AES_128_GCM_SHA256,
            suite::TLS13_AES_256_GCM_SHA384,
            suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        kx_groups: vec![rustls::crypto::ring::kx_group::X25519],
        signature_verification_algorithms: ED25519_ONLY,
        secure_random: &OsRandom,
        key_provider: &Ed25519Keys,
    })
}

/// Randomness for TLS from the OS.
#[derive(Debug)]
struct OsRandom;

impl rustls::crypto::SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        getrandom::fill(buf).map_err(|_| rustls::crypto::GetRandomFailed)
    }
}

/// Loads ed25519 private keys, the only kind PubkyTLS has.
#[derive(Debug)]
struct Ed25519Keys;

impl rustls::crypto::KeyProvider for Ed25519Keys {
    fn load_private_key(
        &self,
        key_der: rustls::pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        match key_der {
            rustls::pki_types::PrivateKeyDer::Pkcs8(der) => any_eddsa_type(&der),
            _ => Err(rustls::Error::General(
                "PubkyTLS keys are ed25519 in PKCS#8".into(),
            )),
        }
    }
}

/// The rustls server configuration for PubkyTLS with `signing` as the raw public key.
pub fn server_config(signing: &SigningKey) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let err = |e: &dyn std::fmt::Display| TlsConfigError(e.to_string());
    let pkcs8 = signing.to_pkcs8_der().map_err(|e| err(&e))?;
    let der = PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec());
    let signer = any_eddsa_type(&der).map_err(|e| err(&e))?;
    let spki = ed25519_spki(signing.verifying_key().as_bytes());
    let certified = CertifiedKey::new(vec![CertificateDer::from(spki)], signer);
    let provider = provider();
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(RawKeyResolver {
            key: Arc::new(certified),
            homeserver: PublicKey::from(signing.verifying_key()),
        }));
    Ok(Arc::new(config))
}

/// Client side of PubkyTLS: accepts exactly the raw key `expected` (what the SDK does after
/// resolving the record), TLS 1.3 only. Used by `pubky-edge` to check itself, by the load
/// generator and by tests.
pub fn client_config(expected: &PublicKey) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = ExpectKey {
        spki: ed25519_spki(expected.as_bytes()),
        provider: provider.clone(),
    };
    // Invariant: ring supports TLS 1.3, so the version selection cannot fail.
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring provides TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

#[derive(Debug)]
struct ExpectKey {
    spki: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for ExpectKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if intermediates.is_empty() && end_entity.as_ref() == self.spki.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_is_the_rfc8410_encoding() {
        // The test key of RFC 8410 §10.1.
        let key: [u8; 32] = [
            0x19, 0xbf, 0x44, 0x09, 0x69, 0x84, 0xcd, 0xfe, 0x85, 0x41, 0xba, 0xc1, 0x67, 0xdc,
            0x3b, 0x96, 0xc8, 0x50, 0x86, 0xaa, 0x30, 0xb6, 0xb6, 0xcb, 0x0c, 0x5c, 0x38, 0xad,
            0x70, 0x31, 0x66, 0xe1,
        ];
        let spki = ed25519_spki(&key);
        assert_eq!(spki.len(), 44);
        // Same bytes as the key's own DER encoder produces.
        use ed25519_dalek::pkcs8::EncodePublicKey;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
        assert_eq!(spki, vk.to_public_key_der().unwrap().as_bytes());
    }

    #[test]
    fn server_names() {
        let hs = PublicKey::from(SigningKey::from_bytes(&[0; 32]).verifying_key());
        let user = PublicKey::from(SigningKey::from_bytes(&[1; 32]).verifying_key());
        assert!(server_name_allowed(None, &hs));
        assert!(server_name_allowed(Some(&hs.to_string()), &hs));
        assert!(server_name_allowed(Some(&format!("{hs}.")), &hs));
        assert!(server_name_allowed(Some(&format!("_pubky.{user}")), &hs));
        assert!(!server_name_allowed(Some(&user.to_string()), &hs));
        assert!(!server_name_allowed(Some("example.com"), &hs));
        assert!(!server_name_allowed(Some("_pubky.example"), &hs));
        assert!(!server_name_allowed(Some(&format!("www.{hs}")), &hs));
    }

    #[test]
    fn config_builds_for_tls13_only() {
        let cfg = server_config(&SigningKey::from_bytes(&[7; 32])).unwrap();
        assert!(cfg.alpn_protocols.is_empty());
    }
}
