//! The tenant system: who the tenants are, their SIP domains and realms, their extensions (DNs)
//! with credentials, and the digest algorithms each accepts. The tenant actor owns the
//! configuration and hands every subscriber an immutable snapshot ([`Directory`]); lookups are
//! plain functions of that snapshot.
//!
//! Configuration comes from the node's TOML file or, without one, the built-in demo tenant.
//! (PostgreSQL and live reload come with the configuration issue.)

mod actor;

pub use actor::{TenantActor, TenantMsg};

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use switchboard_sip::auth::Algorithm;

/// A tenant as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// The SIP domain phones register in (`sip:<dn>@<domain>`).
    pub domain: String,
    /// The digest realm; the domain when absent.
    #[serde(default)]
    pub realm: Option<String>,
    /// Digest algorithms in the order they are offered. Old clients take the first challenge
    /// they see and know only MD5, so MD5 first suits them.
    #[serde(default = "default_digest")]
    pub digest: Vec<String>,
    /// Whether extensions prove who they are with digest before registering (the default).
    /// `false` suits a trusted network only, as on a SIP Server whose DNs have no
    /// `authenticate-requests`; each extension may say otherwise.
    #[serde(default = "yes")]
    pub authenticate: bool,
    #[serde(default)]
    pub extensions: Vec<ExtensionConfig>,
}

/// An extension DN that registers with its own password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    pub dn: String,
    /// Required when the extension authenticates.
    #[serde(default)]
    pub password: String,
    /// Overrides the tenant's digest order for this DN.
    #[serde(default)]
    pub digest: Option<Vec<String>>,
    /// Overrides the tenant's `authenticate`.
    #[serde(default)]
    pub authenticate: Option<bool>,
}

fn default_digest() -> Vec<String> {
    vec!["MD5".into(), "SHA-256".into()]
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("tenant {tenant}: unknown digest algorithm {name:?} (MD5 or SHA-256)")]
    Algorithm { tenant: String, name: String },
    #[error("tenant {tenant}: no digest algorithm")]
    NoAlgorithm { tenant: String },
    #[error("tenant {0:?} is defined twice")]
    DuplicateTenant(String),
    #[error("domain {0:?} belongs to two tenants")]
    DuplicateDomain(String),
    #[error("tenant {tenant}: extension {dn:?} is defined twice")]
    DuplicateExtension { tenant: String, dn: String },
    #[error("tenant {tenant}: extension {dn:?} is not a valid SIP user part")]
    BadExtension { tenant: String, dn: String },
    #[error("tenant {tenant}: domain {domain:?} is not a valid SIP host")]
    BadDomain { tenant: String, domain: String },
    #[error(
        "tenant {tenant}: extension {dn:?} authenticates but has no password \
         (set one, or `authenticate = false` on a trusted network)"
    )]
    NoPassword { tenant: String, dn: String },
}

/// A tenant ready for use.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    /// Lowercase.
    pub domain: String,
    pub realm: String,
    pub digest: Vec<Algorithm>,
    /// Whether REGISTERs for DNs this tenant does not know get a challenge (as every one of an
    /// authenticating tenant does, so that DNs cannot be guessed) or a plain 404.
    pub authenticate: bool,
    pub extensions: HashMap<String, Extension>,
}

#[derive(Debug, Clone)]
pub struct Extension {
    pub dn: String,
    pub password: String,
    pub digest: Vec<Algorithm>,
    /// Whether a REGISTER for this DN must carry valid credentials.
    pub authenticate: bool,
}

impl Tenant {
    pub fn from_config(c: &TenantConfig) -> Result<Self, ConfigError> {
        let algorithms = |names: &[String]| -> Result<Vec<Algorithm>, ConfigError> {
            let list = names
                .iter()
                .map(|n| {
                    Algorithm::from_name(n).ok_or_else(|| ConfigError::Algorithm {
                        tenant: c.name.clone(),
                        name: n.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if list.is_empty() {
                return Err(ConfigError::NoAlgorithm {
                    tenant: c.name.clone(),
                });
            }
            Ok(list)
        };
        if switchboard_sip::Host::parse_str(&c.domain).is_err() {
            return Err(ConfigError::BadDomain {
                tenant: c.name.clone(),
                domain: c.domain.clone(),
            });
        }
        let digest = algorithms(&c.digest)?;
        let mut extensions = HashMap::new();
        for e in &c.extensions {
            if !switchboard_sip::uri::is_valid_user(&e.dn) {
                return Err(ConfigError::BadExtension {
                    tenant: c.name.clone(),
                    dn: e.dn.clone(),
                });
            }
            let authenticate = e.authenticate.unwrap_or(c.authenticate);
            if authenticate && e.password.is_empty() {
                return Err(ConfigError::NoPassword {
                    tenant: c.name.clone(),
                    dn: e.dn.clone(),
                });
            }
            let ext = Extension {
                dn: e.dn.clone(),
                password: e.password.clone(),
                digest: match &e.digest {
                    Some(names) => algorithms(names)?,
                    None => digest.clone(),
                },
                authenticate,
            };
            if extensions.insert(e.dn.clone(), ext).is_some() {
                return Err(ConfigError::DuplicateExtension {
                    tenant: c.name.clone(),
                    dn: e.dn.clone(),
                });
            }
        }
        Ok(Self {
            name: c.name.clone(),
            domain: c.domain.to_ascii_lowercase(),
            realm: c.realm.clone().unwrap_or_else(|| c.domain.clone()),
            digest,
            authenticate: c.authenticate,
            extensions,
        })
    }

    /// The address of record of a DN.
    pub fn aor(&self, dn: &str) -> String {
        format!("sip:{dn}@{}", self.domain)
    }
}

/// The demo tenant of design.md: domain and realm `demo.local`, DNs 1001 to 1020 with
/// passwords `demo<dn>`. It challenges with MD5 only: design.md has it offer MD5 first and
/// SHA-256 second, but Debian's baresip 1.0.0 (libre before 2.0) gives up on a 401 that holds
/// any challenge other than MD5, whatever the order, and a demo must work with the softphones
/// people try first. Configured tenants offer both unless they say otherwise.
pub fn demo_tenant() -> TenantConfig {
    TenantConfig {
        name: "demo".into(),
        domain: "demo.local".into(),
        realm: None,
        digest: vec!["MD5".into()],
        authenticate: true,
        extensions: (1001..=1020)
            .map(|dn| ExtensionConfig {
                dn: dn.to_string(),
                password: format!("demo{dn}"),
                digest: None,
                authenticate: None,
            })
            .collect(),
    }
}

/// An immutable snapshot of every tenant, by name and by domain.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: HashMap<String, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
}

impl Directory {
    pub fn new(configs: &[TenantConfig]) -> Result<Self, ConfigError> {
        let mut dir = Self::default();
        for c in configs {
            let tenant = Arc::new(Tenant::from_config(c)?);
            if dir.by_name.contains_key(&tenant.name) {
                return Err(ConfigError::DuplicateTenant(tenant.name.clone()));
            }
            if dir.by_domain.contains_key(&tenant.domain) {
                return Err(ConfigError::DuplicateDomain(tenant.domain.clone()));
            }
            dir.by_domain.insert(tenant.domain.clone(), tenant.clone());
            dir.by_name.insert(tenant.name.clone(), tenant);
        }
        Ok(dir)
    }

    pub fn by_domain(&self, domain: &str) -> Option<&Arc<Tenant>> {
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_domain.get(&domain.to_ascii_lowercase())
        } else {
            self.by_domain.get(domain)
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_name.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_tenant_matches_the_design() {
        let dir = Directory::new(&[demo_tenant()]).expect("valid");
        let t = dir.by_domain("DEMO.local").expect("demo");
        assert_eq!(t.realm, "demo.local");
        assert_eq!(t.digest, [Algorithm::Md5]);
        assert_eq!(t.extensions.len(), 20);
        assert_eq!(t.extensions["1007"].password, "demo1007");
        assert_eq!(t.aor("1001"), "sip:1001@demo.local");
    }

    #[test]
    fn bad_configuration_is_explained() {
        let mut c = demo_tenant();
        c.digest = vec!["SHA-512".into()];
        let e = Directory::new(&[c]).expect_err("bad algorithm");
        assert!(e.to_string().contains("SHA-512"), "{e}");
        let e = Directory::new(&[demo_tenant(), demo_tenant()]).expect_err("twice");
        assert!(matches!(e, ConfigError::DuplicateTenant(_)));
        let mut c = demo_tenant();
        c.extensions[1].dn = "1001".into();
        assert!(matches!(
            Directory::new(&[c]),
            Err(ConfigError::DuplicateExtension { .. })
        ));
        let mut c = demo_tenant();
        c.extensions[0].dn = "10 01".into();
        assert!(matches!(
            Directory::new(&[c]),
            Err(ConfigError::BadExtension { .. })
        ));
        let mut c = demo_tenant();
        c.extensions[3].password.clear();
        let e = Directory::new(&[c]).expect_err("no password");
        assert!(e.to_string().contains("\"1004\" authenticates"), "{e}");
    }

    #[test]
    fn authentication_may_be_turned_off_per_tenant_and_per_dn() {
        let mut c = demo_tenant();
        c.authenticate = false;
        c.extensions[0].password.clear();
        c.extensions[1].authenticate = Some(true);
        let dir = Directory::new(&[c]).expect("a DN without password need not authenticate");
        let t = dir.by_name("demo").expect("demo");
        assert!(!t.extensions["1001"].authenticate);
        assert!(t.extensions["1002"].authenticate);
        assert!(!t.extensions["1003"].authenticate);
    }

    #[test]
    fn per_dn_digest_order() {
        let mut c = demo_tenant();
        c.extensions[0].digest = Some(vec!["SHA-256".into()]);
        let dir = Directory::new(&[c]).expect("valid");
        let t = dir.by_name("demo").expect("demo");
        assert_eq!(t.extensions["1001"].digest, [Algorithm::Sha256]);
        assert_eq!(t.extensions["1002"].digest, [Algorithm::Md5]);
    }
}
