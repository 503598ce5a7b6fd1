//! Provisioning: one object of a tenant created, replaced or deleted at a time, as the gRPC
//! provisioning API asks. Each change runs in one transaction under a lock on the tenant's
//! row (so writers of one tenant queue, on every node): the tenant as stored is changed in
//! memory, checked whole ([`Tenant::from_config`] and the strategy validator), and only then
//! are the rows that changed written, the version raised and the nodes told. A change that is
//! refused writes nothing.
//!
//! The object types are described by [`Kind`] tables (which list of the tenant, which column
//! names an object, how it is stored), so that create, update and delete are written once.
//! Dial plan rules (named by their place in the order) and strategies (versioned) have their
//! own operations.

use std::sync::Arc;

use serde_json::{Value, json};

use super::postgres::{ConfigStore, Edit, RowChange, Touched};
use super::{
    AgentConfig, ApiKeyConfig, ConfigError, DialRuleConfig, DnConfig, MediaServerConfig,
    NamedConfig, PlaceConfig, RoutingPointConfig, StrategyConfig, Tenant, TenantConfig,
    TrunkConfig,
};

/// Why a change was refused, in the terms of the gRPC status it becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The object itself is wrong: `field` names where, as the API request spells it
    /// (`dn.number`, `agent.skills.french`).
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The change is sound in itself but would break other objects (a skill agents have).
    #[error("{0}")]
    Conflict(String),
    /// PostgreSQL cannot be reached, or the node cannot serve the change now (its store or
    /// the tenant system is down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused the statement for a reason none of the above names.
    #[error("postgresql refused the change ({sqlstate}): {message}")]
    Refused { sqlstate: String, message: String },
    /// A stored row does not read back as configuration (written by another version).
    #[error("stored configuration does not decode: {0}")]
    Unreadable(String),
}

impl From<tokio_postgres::Error> for ProvisionError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let Some(db) = e.as_db_error() else {
            // No answer from the server: the connection is gone or never came.
            return ProvisionError::Unavailable(format!("postgresql: {e}"));
        };
        match (db.code(), db.constraint()) {
            (code, Some("tenants_name_key")) if *code == SqlState::UNIQUE_VIOLATION => {
                ProvisionError::AlreadyExists("tenant".into())
            }
            (code, Some("tenants_domain_key")) if *code == SqlState::UNIQUE_VIOLATION => {
                ProvisionError::Invalid {
                    field: "tenant.domain".into(),
                    problem: "the domain belongs to another tenant".into(),
                }
            }
            (code, Some("api_keys_hash_key")) if *code == SqlState::UNIQUE_VIOLATION => {
                ProvisionError::Invalid {
                    field: "api_keys".into(),
                    problem: "a key hash is another key's too".into(),
                }
            }
            (code, _) if *code == SqlState::UNIQUE_VIOLATION => {
                ProvisionError::AlreadyExists(db.message().to_owned())
            }
            (code, _) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
                ProvisionError::Conflict(db.message().to_owned())
            }
            (code, _)
                if code.code().starts_with("08")
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW =>
            {
                ProvisionError::Unavailable(format!("postgresql: {}", db.message()))
            }
            (code, _) => ProvisionError::Refused {
                sqlstate: code.code().to_owned(),
                message: db.message().to_owned(),
            },
        }
    }
}

impl From<crate::Error> for ProvisionError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Postgres(e) => e.into(),
            crate::Error::Decode(e) => ProvisionError::Unreadable(e.to_string()),
            // Redis, a stopped system, a failed migration: the node cannot serve the change.
            other => ProvisionError::Unavailable(other.to_string()),
        }
    }
}

/// Checks a strategy's document when it is saved (the routing system supplies it): `Err`
/// says what is wrong with it.
pub type StrategyValidator = Arc<dyn Fn(&StrategyConfig) -> Result<(), String> + Send + Sync>;

/// One type of object of a tenant: where it is kept and what names it.
pub struct Kind<T: 'static> {
    /// The tenant's list (a field of [`TenantConfig`]) and the table that stores it.
    pub list: &'static str,
    /// The column (and field) that names an object.
    pub key_column: &'static str,
    /// The object's field in API requests, for naming bad fields (`dn`).
    pub field: &'static str,
    /// What an object is called in messages (`DN`).
    pub what: &'static str,
    pub items: fn(&TenantConfig) -> &Vec<T>,
    pub items_mut: fn(&mut TenantConfig) -> &mut Vec<T>,
    pub key: fn(&T) -> &str,
    pub set_key: fn(&mut T, String),
    /// The object as a row of its table, without `tenant_id` and `position`.
    pub row: fn(&T) -> Value,
}

impl<T> Kind<T> {
    /// The object named `id`, if the tenant has it.
    pub fn find<'a>(&self, config: &'a TenantConfig, id: &str) -> Option<&'a T> {
        (self.items)(config).iter().find(|x| (self.key)(x) == id)
    }
}

pub const DNS: Kind<DnConfig> = Kind {
    list: "dns",
    key_column: "number",
    field: "dn",
    what: "DN",
    items: |c| &c.dns,
    items_mut: |c| &mut c.dns,
    key: |d| &d.number,
    set_key: |d, k| d.number = k,
    row: |d| {
        json!({
            "number": d.number, "kind": d.kind, "password": d.password, "digest": d.digest,
            "authenticate": d.authenticate, "options": d.options,
        })
    },
};

fn named_row(n: &NamedConfig) -> Value {
    json!({ "name": n.name, "options": n.options })
}

pub const SKILLS: Kind<NamedConfig> = Kind {
    list: "skills",
    key_column: "name",
    field: "skill",
    what: "skill",
    items: |c| &c.skills,
    items_mut: |c| &mut c.skills,
    key: |n| &n.name,
    set_key: |n, k| n.name = k,
    row: named_row,
};

pub const AGENT_GROUPS: Kind<NamedConfig> = Kind {
    list: "agent_groups",
    key_column: "name",
    field: "agent_group",
    what: "agent group",
    items: |c| &c.agent_groups,
    items_mut: |c| &mut c.agent_groups,
    key: |n| &n.name,
    set_key: |n, k| n.name = k,
    row: named_row,
};

pub const QUEUES: Kind<NamedConfig> = Kind {
    list: "queues",
    key_column: "name",
    field: "queue",
    what: "queue",
    items: |c| &c.queues,
    items_mut: |c| &mut c.queues,
    key: |n| &n.name,
    set_key: |n, k| n.name = k,
    row: named_row,
};

pub const PLACES: Kind<PlaceConfig> = Kind {
    list: "places",
    key_column: "name",
    field: "place",
    what: "place",
    items: |c| &c.places,
    items_mut: |c| &mut c.places,
    key: |p| &p.name,
    set_key: |p, k| p.name = k,
    row: |p| json!({ "name": p.name, "dns": p.dns, "options": p.options }),
};

pub const AGENTS: Kind<AgentConfig> = Kind {
    list: "agents",
    key_column: "id",
    field: "agent",
    what: "agent",
    items: |c| &c.agents,
    items_mut: |c| &mut c.agents,
    key: |a| &a.id,
    set_key: |a, k| a.id = k,
    row: |a| {
        json!({
            "id": a.id, "name": a.name, "login_code": a.login_code, "place": a.place,
            "skills": a.skills, "groups": a.groups, "wrap_up_secs": a.wrap_up_secs,
            "options": a.options,
        })
    },
};

pub const ROUTING_POINTS: Kind<RoutingPointConfig> = Kind {
    list: "routing_points",
    key_column: "number",
    field: "routing_point",
    what: "routing point",
    items: |c| &c.routing_points,
    items_mut: |c| &mut c.routing_points,
    key: |r| &r.number,
    set_key: |r, k| r.number = k,
    row: |r| {
        json!({
            "number": r.number, "strategy": r.strategy,
            "default_destination": r.default_destination, "timeout_secs": r.timeout_secs,
            "options": r.options,
        })
    },
};

pub const TRUNKS: Kind<TrunkConfig> = Kind {
    list: "trunks",
    key_column: "name",
    field: "trunk",
    what: "trunk",
    items: |c| &c.trunks,
    items_mut: |c| &mut c.trunks,
    key: |t| &t.name,
    set_key: |t, k| t.name = k,
    row: |t| {
        json!({
            "name": t.name, "inbound": t.inbound, "gateway": t.gateway,
            "caller_id": t.caller_id, "options": t.options,
        })
    },
};

pub const MEDIA_SERVERS: Kind<MediaServerConfig> = Kind {
    list: "media_servers",
    key_column: "name",
    field: "media_server",
    what: "media server",
    items: |c| &c.media_servers,
    items_mut: |c| &mut c.media_servers,
    key: |m| &m.name,
    set_key: |m, k| m.name = k,
    row: |m| json!({ "name": m.name, "address": m.address, "options": m.options }),
};

pub const API_KEYS: Kind<ApiKeyConfig> = Kind {
    list: "api_keys",
    key_column: "name",
    field: "api_key",
    what: "API key",
    items: |c| &c.api_keys,
    items_mut: |c| &mut c.api_keys,
    key: |k| &k.name,
    set_key: |k, name| k.name = name,
    row: |k| json!({ "name": k.name, "hash": k.hash, "scope": k.scope.as_str() }),
};

/// Dial plan rules are named by their place in the order; the key is unused.
pub const DIAL_PLAN: Kind<DialRuleConfig> = Kind {
    list: "dial_plan",
    key_column: "position",
    field: "rule",
    what: "dial plan rule",
    items: |c| &c.dial_plan,
    items_mut: |c| &mut c.dial_plan,
    key: |r| &r.pattern,
    set_key: |_, _| {},
    row: |r| {
        json!({
            "pattern": r.pattern, "rewrite": r.rewrite, "destination": r.destination,
            "options": r.options,
        })
    },
};

/// Strategies are named by name and version; the key column names every version.
pub const STRATEGIES: Kind<StrategyConfig> = Kind {
    list: "strategies",
    key_column: "name",
    field: "strategy",
    what: "strategy",
    items: |c| &c.strategies,
    items_mut: |c| &mut c.strategies,
    key: |s| &s.name,
    set_key: |s, k| s.name = k,
    row: |s| {
        json!({
            "name": s.name, "version": s.version, "document": s.document, "options": s.options,
        })
    },
};

/// The latest version of strategy `name`.
pub fn latest_strategy<'a>(config: &'a TenantConfig, name: &str) -> Option<&'a StrategyConfig> {
    config
        .strategies
        .iter()
        .filter(|s| s.name == name)
        .max_by_key(|s| s.version)
}

impl ConfigStore {
    /// Adds an object to a tenant; returns the tenant as it now stands.
    pub async fn create<T: Clone + Send + Sync>(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        kind: &'static Kind<T>,
        item: T,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            let key = (kind.key)(&item);
            if kind.find(c, key).is_some() {
                return Err(ProvisionError::AlreadyExists(format!(
                    "{} {key:?}",
                    kind.what
                )));
            }
            let row = (kind.row)(&item);
            let items = (kind.items_mut)(c);
            items.push(item);
            Ok(Edit {
                rows: vec![RowChange::Insert {
                    table: kind.list,
                    row,
                }],
                touched: Some(touched(kind, items.len() - 1)),
            })
        })
        .await
    }

    /// Replaces the object named `id` (whose key stays `id`: an empty key in `item` is
    /// filled in, another one refused).
    pub async fn update<T: Clone + Send + Sync>(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        kind: &'static Kind<T>,
        id: &str,
        mut item: T,
    ) -> Result<Tenant, ProvisionError> {
        let key = (kind.key)(&item);
        if key.is_empty() {
            (kind.set_key)(&mut item, id.to_owned());
        } else if key != id {
            return Err(ProvisionError::Invalid {
                field: format!("{}.{}", kind.field, kind.key_column),
                problem: format!(
                    "{key:?} is not {id:?}: a {} keeps its {}; delete it and create another",
                    kind.what, kind.key_column
                ),
            });
        }
        self.change(tenant, held, |c| {
            let items = (kind.items_mut)(c);
            let Some(at) = items.iter().position(|x| (kind.key)(x) == id) else {
                return Err(not_found(kind, id));
            };
            let row = (kind.row)(&item);
            items[at] = item;
            Ok(Edit {
                rows: vec![RowChange::Replace {
                    table: kind.list,
                    key_column: kind.key_column,
                    key: id.to_owned(),
                    row,
                }],
                touched: Some(touched(kind, at)),
            })
        })
        .await
    }

    /// Deletes the object named `id` (every version of a strategy).
    pub async fn remove<T: Clone + Send + Sync>(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        kind: &'static Kind<T>,
        id: &str,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            let items = (kind.items_mut)(c);
            let before = items.len();
            items.retain(|x| (kind.key)(x) != id);
            if items.len() == before {
                return Err(not_found(kind, id));
            }
            Ok(Edit {
                rows: vec![RowChange::Delete {
                    table: kind.list,
                    key_column: kind.key_column,
                    key: id.to_owned(),
                }],
                touched: None,
            })
        })
        .await
    }

    /// Inserts a dial plan rule at `index` (the end when `None`).
    pub async fn insert_rule(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        index: Option<usize>,
        rule: DialRuleConfig,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            let at = index.unwrap_or(c.dial_plan.len());
            if at > c.dial_plan.len() {
                return Err(ProvisionError::Invalid {
                    field: "index".into(),
                    problem: format!("the dial plan has {} rules", c.dial_plan.len()),
                });
            }
            c.dial_plan.insert(at, rule);
            Ok(rewrite_dial_plan(c, Some(at)))
        })
        .await
    }

    /// Replaces the dial plan rule at `index`.
    pub async fn update_rule(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        index: usize,
        rule: DialRuleConfig,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            let Some(slot) = c.dial_plan.get_mut(index) else {
                return Err(not_found(&DIAL_PLAN, &index.to_string()));
            };
            *slot = rule;
            Ok(rewrite_dial_plan(c, Some(index)))
        })
        .await
    }

    /// Deletes the dial plan rule at `index`; the rules after it move up one.
    pub async fn remove_rule(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        index: usize,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            if index >= c.dial_plan.len() {
                return Err(not_found(&DIAL_PLAN, &index.to_string()));
            }
            c.dial_plan.remove(index);
            Ok(rewrite_dial_plan(c, None))
        })
        .await
    }

    /// Stores a strategy as the next version of `strategy.name` (version 1 when `first`,
    /// refused if the name is taken; otherwise refused if there is no such strategy).
    pub async fn save_strategy(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        mut strategy: StrategyConfig,
        first: bool,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            match (latest_strategy(c, &strategy.name), first) {
                (Some(_), true) => {
                    return Err(ProvisionError::AlreadyExists(format!(
                        "strategy {:?}",
                        strategy.name
                    )));
                }
                (None, false) => return Err(not_found(&STRATEGIES, &strategy.name)),
                (Some(latest), false) => strategy.version = latest.version + 1,
                (None, true) => strategy.version = 1,
            }
            let row = (STRATEGIES.row)(&strategy);
            c.strategies.push(strategy);
            Ok(Edit {
                rows: vec![RowChange::Insert {
                    table: STRATEGIES.list,
                    row,
                }],
                touched: Some(touched(&STRATEGIES, c.strategies.len() - 1)),
            })
        })
        .await
    }

    /// Deletes one version of a strategy.
    pub async fn remove_strategy_version(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        name: &str,
        version: u32,
    ) -> Result<Tenant, ProvisionError> {
        self.change(tenant, held, |c| {
            let Some(at) = c
                .strategies
                .iter()
                .position(|s| s.name == name && s.version == version)
            else {
                return Err(not_found(&STRATEGIES, &format!("{name}@{version}")));
            };
            c.strategies.remove(at);
            Ok(Edit {
                rows: vec![RowChange::DeleteStrategyVersion {
                    name: name.to_owned(),
                    version,
                }],
                touched: None,
            })
        })
        .await
    }

    /// Replaces a tenant's own settings (domain, realm, digest order, authentication, wrap-up,
    /// options) with those of `settings`; its objects stay.
    pub async fn update_settings(
        &mut self,
        held: Option<&Tenant>,
        settings: &TenantConfig,
    ) -> Result<Tenant, ProvisionError> {
        self.change(&settings.name, held, |c| {
            c.domain.clone_from(&settings.domain);
            c.realm.clone_from(&settings.realm);
            c.digest.clone_from(&settings.digest);
            c.authenticate = settings.authenticate;
            c.wrap_up_secs = settings.wrap_up_secs;
            c.options.clone_from(&settings.options);
            Ok(Edit {
                rows: Vec::new(),
                touched: None,
            })
        })
        .await
    }
}

fn touched<T>(kind: &Kind<T>, index: usize) -> Touched {
    Touched {
        list: kind.list,
        index,
        field: kind.field,
    }
}

fn not_found<T>(kind: &Kind<T>, id: &str) -> ProvisionError {
    ProvisionError::NotFound(format!("{} {id:?}", kind.what))
}

/// Rules are few and named by their order, so a change writes them all again.
fn rewrite_dial_plan(c: &TenantConfig, at: Option<usize>) -> Edit {
    Edit {
        rows: vec![RowChange::ReplaceAll {
            table: DIAL_PLAN.list,
            rows: c.dial_plan.iter().map(DIAL_PLAN.row).collect(),
        }],
        touched: at.map(|i| touched(&DIAL_PLAN, i)),
    }
}

/// A configuration refused after a change, in the terms of the change: a fault in the object
/// changed names its field as the request spells it; a fault elsewhere is a conflict naming
/// the object that would break.
pub(super) fn refusal(
    config: &TenantConfig,
    error: ConfigError,
    touched: Option<Touched>,
) -> ProvisionError {
    let (field, problem) = match error {
        ConfigError::Invalid { field, problem, .. } => (field, problem),
        other => return ProvisionError::Conflict(other.to_string()),
    };
    if let Some(t) = &touched
        && let Some(rest) = field.strip_prefix(&format!("{}[{}]", t.list, t.index))
    {
        return ProvisionError::Invalid {
            field: format!("{}{rest}", t.field),
            problem,
        };
    }
    if touched.is_none() && !field.contains('[') {
        return ProvisionError::Invalid {
            field: format!("tenant.{field}"),
            problem,
        };
    }
    ProvisionError::Conflict(format!("{}: {problem}", describe(config, &field)))
}

/// `agents[3].place` as `agents[3] ("a1004").place`: the object a field of the whole tenant
/// belongs to, by its key.
fn describe(c: &TenantConfig, field: &str) -> String {
    let Some((list, rest)) = field.split_once('[') else {
        return field.to_owned();
    };
    let Some((index, rest)) = rest.split_once(']') else {
        return field.to_owned();
    };
    let Ok(i) = index.parse::<usize>() else {
        return field.to_owned();
    };
    fn key_of<T>(kind: &Kind<T>, c: &TenantConfig, i: usize) -> Option<String> {
        (kind.items)(c).get(i).map(|x| (kind.key)(x).to_owned())
    }
    let key = match list {
        "dns" => key_of(&DNS, c, i),
        "skills" => key_of(&SKILLS, c, i),
        "agent_groups" => key_of(&AGENT_GROUPS, c, i),
        "queues" => key_of(&QUEUES, c, i),
        "places" => key_of(&PLACES, c, i),
        "agents" => key_of(&AGENTS, c, i),
        "routing_points" => key_of(&ROUTING_POINTS, c, i),
        "trunks" => key_of(&TRUNKS, c, i),
        "media_servers" => key_of(&MEDIA_SERVERS, c, i),
        "strategies" => key_of(&STRATEGIES, c, i),
        "api_keys" => key_of(&API_KEYS, c, i),
        _ => None,
    };
    match key {
        Some(key) => format!("{list}[{i}] ({key:?}){rest}"),
        None => field.to_owned(),
    }
}
