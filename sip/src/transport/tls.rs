//! SIP over TLS (RFC 3261 26, RFC 5630): the node's certificate and key, the authorities it
//! trusts, and the handshakes both ways. A TLS connection is then framed and queued exactly as
//! a TCP one (see [`super::tcp`]).
//!
//! The certificate can be replaced while the node runs ([`Tls::reload`]): the next handshake
//! uses the new one, connections already open keep theirs. A file that does not load (garbage,
//! a certificate that does not match its key) leaves the one in use in place.
//!
//! Client certificates are asked of the sources that must present one (the addresses of
//! trunks configured to require them, as [`Tls::set_mutual`] says): their handshake fails
//! without a certificate signed by a trusted authority. Everyone else (phones, which
//! authenticate with digest) is not asked.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Where the TLS listener is and what it presents.
#[derive(Clone)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub tls: Tls,
    /// A handshake not done within this is given up (a client that connects and stalls).
    pub handshake_timeout: Duration,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .field("files", &self.tls.files)
            .finish_non_exhaustive()
    }
}

/// The files TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), its own first.
    pub certificate: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The authorities (PEM) trusted to sign the certificates of peers: servers the node
    /// connects to, and clients that must present one.
    pub ca: Option<PathBuf>,
}

/// What the handshakes use, replaced whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    current: Arc<RwLock<Configs>>,
    mutual: Arc<RwLock<Required>>,
}

/// Which sources must present a client certificate.
type Required = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

#[derive(Clone)]
struct Configs {
    /// For sources not asked for a certificate.
    server: Arc<ServerConfig>,
    /// For those that must present one; none without an authority to check it against.
    mutual: Option<Arc<ServerConfig>>,
    /// For connections the node opens.
    client: Arc<ClientConfig>,
}

impl Tls {
    /// Loads `files`; the error says which file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let configs = Configs::load(&files)?;
        Ok(Self {
            files,
            current: Arc::new(RwLock::new(configs)),
            mutual: Arc::new(RwLock::new(Arc::new(|_| false))),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Loads the files again for the next handshakes; on error the configuration in use
    /// stays.
    pub fn reload(&self) -> Result<(), String> {
        let configs = Configs::load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = configs;
        Ok(())
    }

    /// Which sources must present a client certificate.
    pub fn set_mutual(&self, required: impl Fn(IpAddr) -> bool + Send + Sync + 'static) {
        *self.mutual.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(required);
    }

    /// The configuration for a connection from `ip`; `None` when it must present a client
    /// certificate and no authority is configured to check one against.
    pub(super) fn server_for(&self, ip: IpAddr) -> Option<Arc<ServerConfig>> {
        let required = (self.mutual.read().unwrap_or_else(|p| p.into_inner()))(ip);
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        if required {
            current.mutual.clone()
        } else {
            Some(current.server.clone())
        }
    }

    pub(super) fn client(&self) -> Arc<ClientConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .client
            .clone()
    }

    /// The name the node checks a server's certificate against: its address.
    pub(super) fn server_name(dest: SocketAddr) -> ServerName<'static> {
        ServerName::IpAddress(dest.ip().into())
    }
}

impl Configs {
    fn load(files: &TlsFiles) -> Result<Self, String> {
        // ring builds with the C compiler alone (aws-lc-rs, which adds the post-quantum key
        // exchange rustls now prefers, needs cmake and minutes more of build).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certificates(&files.certificate)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| format!("{}: no private key: {e}", files.key.display()))?;
        let roots = match &files.ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                Some(Arc::new(roots))
            }
            None => None,
        };
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
        };
        let identity =
            |builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>| {
                builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| {
                        format!(
                            "{} with {}: {e}",
                            files.certificate.display(),
                            files.key.display()
                        )
                    })
            };
        let server = identity(builder()?.with_no_client_auth())?;
        let mutual = match &roots {
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| format!("client certificate authorities: {e}"))?;
                Some(Arc::new(identity(
                    builder()?.with_client_cert_verifier(verifier),
                )?))
            }
            None => None,
        };
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(
                roots.map_or_else(RootCertStore::empty, |r| RootCertStore::clone(&r)),
            )
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("{}: {e}", files.certificate.display()))?;
        Ok(Self {
            server: Arc::new(server),
            mutual,
            client: Arc::new(client),
        })
    }
}

/// The certificates of a PEM file; an error when there are none or one is damaged.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}
