//! The tenants as every system reads them: each tenant checked and indexed ([`Tenant`], with
//! its DNs, trunks, media servers, compiled dial plan and strategies), and the immutable
//! snapshot of them all ([`Directory`]) the tenant actor hands its subscribers. Lookups are
//! plain functions of the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use switchboard_routing::dialplan::DialPlan;
use switchboard_routing::strategy::Program;
use switchboard_sip::auth::{Account, Algorithm};

use super::{DnKind, RoutingPointConfig, TenantConfig};

/// A configuration that cannot be used, naming the tenant and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("tenant {0:?} is defined twice")]
    DuplicateTenant(String),
    #[error("domain {0:?} belongs to two tenants")]
    DuplicateDomain(String),
    #[error("tenant {tenant}: {field}: {problem}")]
    Invalid {
        tenant: String,
        /// Where in the tenant: `dns[3].number`, `agents[0].skills.english`.
        field: String,
        problem: String,
    },
}

impl ConfigError {
    /// The field at fault, for an API's INVALID_ARGUMENT.
    pub fn field(&self) -> &str {
        match self {
            ConfigError::DuplicateTenant(_) => "name",
            ConfigError::DuplicateDomain(_) => "domain",
            ConfigError::Invalid { field, .. } => field,
        }
    }
}

/// A tenant ready for use: its configuration, checked, with the indexes lookups need.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    /// Lowercase.
    pub domain: String,
    /// The domain as a SIP host, for comparing with the hosts of URIs.
    pub host: switchboard_sip::Host,
    pub realm: String,
    pub digest: Vec<Algorithm>,
    /// Whether REGISTERs for DNs this tenant does not know get a challenge (as every one of an
    /// authenticating tenant does, so that DNs cannot be guessed) or a plain 404.
    pub authenticate: bool,
    /// Every DN by number.
    pub dns: HashMap<String, Dn>,
    /// The dial plan, compiled.
    pub dial_plan: DialPlan,
    /// The trunks, their addresses parsed: admission looks at them for every new call.
    pub trunks: Vec<Trunk>,
    /// The media servers, their addresses parsed.
    pub media_servers: Vec<MediaServer>,
    /// Every version of every strategy, compiled, by name then version.
    pub strategies: HashMap<String, BTreeMap<u32, Arc<Program>>>,
    /// The configuration it was built from.
    pub config: TenantConfig,
    /// The version it was stored at in PostgreSQL; 0 for an embedded configuration.
    pub version: i64,
}

/// A carrier's trunk as calls use it.
#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// The networks calls may come from.
    pub inbound: Vec<(std::net::IpAddr, u8)>,
    /// Where outbound calls go, and over what (option `transport`: udp, tcp or tls).
    pub gateway: Option<SocketAddr>,
    pub transport: switchboard_sip::transport::Transport,
    /// Calls from the trunk must come over TLS with a client certificate signed by an
    /// authority of `[tls] ca` (option `client-certificate = "required"`): mutual TLS, the way
    /// carriers authenticate SBCs.
    pub client_certificate: bool,
}

impl Trunk {
    /// Whether a call from `ip` comes from this trunk.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.inbound.iter().any(|&net| in_network(ip, net))
    }
}

/// A media server as calls use it.
#[derive(Debug, Clone)]
pub struct MediaServer {
    pub name: String,
    pub address: SocketAddr,
    /// How the server is told what to do (option `control`).
    pub control: MediaControl,
}

/// How a media server is controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaControl {
    /// RFC 4240 URIs alone (`annc=`, `conf=`): announcements and conferences, no more.
    #[default]
    Netann,
    /// MSML (RFC 5707) in SIP INFO besides: conferences with stream directions, recording.
    Msml,
}

impl MediaControl {
    pub fn name(self) -> &'static str {
        match self {
            MediaControl::Netann => "netann",
            MediaControl::Msml => "msml",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [MediaControl::Netann, MediaControl::Msml]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// A DN with what the registrar needs of it.
#[derive(Debug, Clone)]
pub struct Dn {
    pub number: String,
    pub kind: DnKind,
    pub password: String,
    pub digest: Vec<Algorithm>,
    /// Whether a REGISTER for this DN must carry valid credentials.
    pub authenticate: bool,
    /// Simultaneous inbound calls at most (option `max-calls`); `None` is unlimited.
    pub max_calls: Option<u32>,
    /// How long a call rings before it is given up (option `no-answer-timeout`, seconds);
    /// `None` takes the node's default.
    pub no_answer_timeout: Option<u32>,
    /// Whether its calls are recorded from their answer (option `record = "true"`).
    pub record: bool,
}

impl Tenant {
    /// The latest version of strategy `name`, compiled, with its version.
    pub fn strategy(&self, name: &str) -> Option<(u32, Arc<Program>)> {
        let (v, p) = self.strategies.get(name)?.last_key_value()?;
        Some((*v, p.clone()))
    }

    /// Version `version` of strategy `name`, if the tenant still holds it.
    pub fn strategy_version(&self, name: &str, version: u32) -> Option<Arc<Program>> {
        self.strategies.get(name)?.get(&version).cloned()
    }

    /// The routing point `number`, if it is one.
    /// Whether a next state asked during a call waits for the call's after-call work to end
    /// (tenant option `next-state = "after-wrap-up"`, the default) rather than being taken
    /// as the call ends (`"after-call"`, which skips the after-call work).
    pub fn next_state_after_wrap_up(&self) -> bool {
        self.config.options.get("next-state").map(|v| v.trim()) != Some("after-call")
    }

    pub fn routing_point(&self, number: &str) -> Option<&RoutingPointConfig> {
        self.config
            .routing_points
            .iter()
            .find(|r| r.number == number)
    }

    /// The address of record of a DN.
    pub fn aor(&self, dn: &str) -> String {
        let mut aor = String::with_capacity(5 + dn.len() + self.domain.len());
        aor.push_str("sip:");
        aor.push_str(dn);
        aor.push('@');
        aor.push_str(&self.domain);
        aor
    }

    /// The DN a phone registers as, if it is one that registers.
    pub fn registering(&self, number: &str) -> Option<&Dn> {
        self.dns.get(number).filter(|d| d.kind.registers())
    }

    /// What a digest user name proves itself with: a DN that registers, with its password
    /// and algorithms.
    pub fn account(&self, user: &str) -> Option<Account<'_>> {
        self.registering(user).map(|d| Account {
            password: &d.password,
            algorithms: &d.digest,
        })
    }

    /// The algorithms a request that names DN `dn` is challenged with, in order: the DN's
    /// own, else the tenant's.
    pub fn digest_for(&self, dn: Option<&str>) -> &[Algorithm] {
        dn.and_then(|d| self.registering(d))
            .map_or(&self.digest, |d| &d.digest)
    }
}

/// `192.0.2.10`, `192.0.2.0/24`, `2001:db8::/32`: the address and the prefix length.
pub fn parse_network(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (
            ip.parse::<std::net::IpAddr>().ok()?,
            len.parse::<u8>().ok()?,
        ),
        None => {
            let ip = s.parse::<std::net::IpAddr>().ok()?;
            (ip, if ip.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Whether `ip` is in the network `net` (an address and a prefix length).
pub fn in_network(ip: std::net::IpAddr, (net, len): (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// How an API key is stored and looked up: `sha256:` and the hex SHA-256 of the key. Keys are
/// long random strings, so a fast hash does; the key itself is never kept.
pub fn hash_api_key(key: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        switchboard_sip::hex(&sha2::Sha256::digest(key.as_bytes()))
    )
}

/// An immutable snapshot of every tenant, by name and by domain.
#[derive(Debug, Default)]
pub struct Directory {
    by_name: HashMap<String, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
    /// Tenants by the hashes of their API keys.
    by_key: HashMap<String, (Arc<Tenant>, super::KeyScope)>,
}

impl Directory {
    pub fn new(configs: &[TenantConfig]) -> Result<Self, ConfigError> {
        let tenants = configs
            .iter()
            .map(|c| Tenant::from_config(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_tenants(tenants)
    }

    /// A directory of tenants already checked, shared with the directory they come from.
    pub fn from_tenants(
        tenants: impl IntoIterator<Item = Arc<Tenant>>,
    ) -> Result<Self, ConfigError> {
        let mut dir = Self::default();
        for tenant in tenants {
            if dir.by_name.contains_key(&tenant.name) {
                return Err(ConfigError::DuplicateTenant(tenant.name.clone()));
            }
            if dir.by_domain.contains_key(&tenant.domain) {
                return Err(ConfigError::DuplicateDomain(tenant.domain.clone()));
            }
            for key in &tenant.config.api_keys {
                if dir
                    .by_key
                    .insert(key.hash.clone(), (tenant.clone(), key.scope))
                    .is_some()
                {
                    return Err(ConfigError::Invalid {
                        tenant: tenant.name.clone(),
                        field: "api_keys".into(),
                        problem: format!("key {:?} is another tenant's key too", key.name),
                    });
                }
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

    /// The tenant an API key reaches, if any, and what the key may do there.
    pub fn by_api_key(&self, key: &str) -> Option<(&Arc<Tenant>, super::KeyScope)> {
        self.by_key.get(&hash_api_key(key)).map(|(t, s)| (t, *s))
    }

    /// The version a tenant is held at; `None` when it is not held.
    pub fn version(&self, name: &str) -> Option<i64> {
        self.by_name.get(name).map(|t| t.version)
    }
}
