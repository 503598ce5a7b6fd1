//! The configuration in PostgreSQL: one row per object, in the tables of
//! `actors/migrations`, which [`ConfigStore::connect`] applies. A tenant is written whole, in one
//! transaction that also raises its version and tells every listening node
//! (`NOTIFY switchboard_config, '<tenant>:<version>'`); it is read whole, from one snapshot of
//! the database.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Transaction};

use super::provision::{self, Kind, ProvisionError, StrategyValidator};
use super::{
    AgentConfig, ApiKeyConfig, DialRuleConfig, DnConfig, DnKind, KeyScope, MediaServerConfig,
    NamedConfig, PlaceConfig, RoutingPointConfig, StatsConfig, StrategyConfig, Tenant,
    TenantConfig, TrunkConfig,
};
use crate::{Error, Result};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The channel nodes listen on for configuration changes.
pub const CHANNEL: &str = "switchboard_config";

/// A tenant's configuration with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub config: TenantConfig,
    pub version: i64,
}

impl Versioned {
    /// The checked snapshot of the tenant, knowing its version.
    pub fn checked(&self) -> Result<Tenant, crate::tenant::ConfigError> {
        let mut tenant = Tenant::from_config(&self.config)?;
        tenant.version = self.version;
        Ok(tenant)
    }
}

/// The tables that hold a tenant's objects, children of `tenants`.
const OBJECT_TABLES: [&str; 12] = [
    "api_keys",
    "agents",
    "places",
    "dns",
    "skills",
    "agent_groups",
    "routing_points",
    "queues",
    "trunks",
    "media_servers",
    "dial_plan",
    "strategies",
];

/// A connection to the configuration database.
pub struct ConfigStore {
    client: Client,
    /// Checks strategy documents before they are saved.
    validator: Option<StrategyValidator>,
}

/// A change to one tenant, as [`ConfigStore::change`] applies it: the rows to write, and the
/// object changed, to name the fields of a refusal.
pub(super) struct Edit {
    pub(super) rows: Vec<RowChange>,
    pub(super) touched: Option<Touched>,
}

/// The object a change touched: its list, its place in it, and its field in API requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Touched {
    pub(super) list: &'static str,
    pub(super) index: usize,
    pub(super) field: &'static str,
}

/// A change to the rows of one table of a tenant (`row`: an object as [`Kind::row`] gives it).
pub(super) enum RowChange {
    /// Adds a row after the others.
    Insert {
        table: &'static str,
        row: Value,
    },
    /// Replaces the row named `key`, in its place.
    Replace {
        table: &'static str,
        key_column: &'static str,
        key: String,
        row: Value,
    },
    /// Deletes the rows named `key`.
    Delete {
        table: &'static str,
        key_column: &'static str,
        key: String,
    },
    DeleteStrategyVersion {
        name: String,
        version: u32,
    },
    /// Replaces every row of the tenant in the table, in this order.
    ReplaceAll {
        table: &'static str,
        rows: Vec<Value>,
    },
}

impl ConfigStore {
    /// Connects and applies the migrations not applied yet.
    pub async fn connect(url: &str) -> Result<Self> {
        let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgresql connection lost");
            }
        });
        let report = embedded::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(Error::Migration)?;
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "configuration schema migrated");
        }
        Ok(Self {
            client,
            validator: None,
        })
    }

    /// A store on a connection already made (and migrated).
    pub(super) fn from_client(client: Client) -> Self {
        Self {
            client,
            validator: None,
        }
    }

    /// Has every strategy document checked by `validator` before it is saved.
    pub fn set_strategy_validator(&mut self, validator: StrategyValidator) {
        self.validator = Some(validator);
    }

    /// Whether the connection has gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Writes a tenant whole, replacing what was stored under its name, and returns its new
    /// version. The configuration is checked first; nothing is written unless all of it is
    /// valid.
    pub async fn import(&mut self, config: &TenantConfig) -> Result<i64> {
        Tenant::from_config(config)?;
        check_strategies(self.validator.as_ref(), config, 0..config.strategies.len()).map_err(
            |(field, problem)| crate::tenant::ConfigError::Invalid {
                tenant: config.name.clone(),
                field,
                problem,
            },
        )?;
        Ok(self.write_whole(config, true).await?)
    }

    /// Stores a new tenant (refused if its name or domain is taken) and returns it as stored.
    pub async fn create_tenant(&mut self, config: &TenantConfig) -> Result<Tenant, ProvisionError> {
        let mut tenant =
            Tenant::from_config(config).map_err(|e| provision::refusal(config, e, None))?;
        check_strategies(self.validator.as_ref(), config, 0..config.strategies.len())
            .map_err(|(field, problem)| ProvisionError::Invalid { field, problem })?;
        tenant.version =
            self.write_whole(config, false)
                .await
                .map_err(|e| match ProvisionError::from(e) {
                    ProvisionError::AlreadyExists(_) => {
                        ProvisionError::AlreadyExists(format!("tenant {:?}", config.name))
                    }
                    other => other,
                })?;
        Ok(tenant)
    }

    /// Writes a checked tenant whole in one transaction, a new one or (with `replace`) over
    /// the one of its name, and tells the nodes; returns its version.
    async fn write_whole(
        &mut self,
        config: &TenantConfig,
        replace: bool,
    ) -> Result<i64, tokio_postgres::Error> {
        let tx = self.client.transaction().await?;
        let (id, version) = upsert_tenant(&tx, config, replace).await?;
        if replace {
            for table in OBJECT_TABLES {
                tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
                    .await?;
            }
        }
        write_objects(&tx, id, config).await?;
        notify(&tx, &config.name, version).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Changes one tenant: `edit` changes the tenant as stored (read under a lock on its row,
    /// so that writers of a tenant queue; `held` saves reading it when it is the version
    /// stored), the result is checked whole, and the rows `edit` names are written with the
    /// tenant's settings and its next version, in one transaction. Returns the tenant as it
    /// now stands.
    pub(super) async fn change(
        &mut self,
        tenant: &str,
        held: Option<&Tenant>,
        edit: impl FnOnce(&mut TenantConfig) -> Result<Edit, ProvisionError>,
    ) -> Result<Tenant, ProvisionError> {
        let validator = self.validator.clone();
        let tx = self.client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                &format!("{TENANT_COLUMNS} WHERE name = $1 FOR UPDATE"),
                &[&tenant],
            )
            .await?
        else {
            return Err(ProvisionError::NotFound(format!("tenant {tenant:?}")));
        };
        let (id, stored): (i64, i64) = (row.get("id"), row.get("version"));
        let mut config = match held {
            Some(t) if t.name == tenant && t.version == stored => t.config.clone(),
            _ => read_tenant(&tx, &row).await?.config,
        };
        let Edit { rows, touched } = edit(&mut config)?;
        let mut checked =
            Tenant::from_config(&config).map_err(|e| provision::refusal(&config, e, touched))?;
        if let Some(t) = touched.filter(|t| t.list == provision::STRATEGIES.list) {
            check_strategies(validator.as_ref(), &config, t.index..t.index + 1).map_err(
                |(_, problem)| ProvisionError::Invalid {
                    field: format!("{}.document", t.field),
                    problem,
                },
            )?;
        }
        for change in rows {
            apply(&tx, id, change).await?;
        }
        let (_, version) = upsert_tenant(&tx, &config, true).await?;
        notify(&tx, tenant, version).await?;
        tx.commit().await?;
        checked.version = version;
        Ok(checked)
    }

    /// One tenant by name, as stored.
    pub async fn load(&mut self, name: &str) -> Result<Option<Versioned>> {
        let tx = self.read_snapshot().await?;
        let row = tx
            .query_opt(&format!("{TENANT_COLUMNS} WHERE name = $1"), &[&name])
            .await?;
        let loaded = match row {
            Some(row) => Some(read_tenant(&tx, &row).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(loaded)
    }

    /// Every tenant, by name.
    pub async fn load_all(&mut self) -> Result<Vec<Versioned>> {
        let tx = self.read_snapshot().await?;
        let rows = tx
            .query(&format!("{TENANT_COLUMNS} ORDER BY name"), &[])
            .await?;
        let mut all = Vec::with_capacity(rows.len());
        for row in &rows {
            all.push(read_tenant(&tx, row).await?);
        }
        tx.commit().await?;
        Ok(all)
    }

    /// The version of every tenant, by name: what a node compares with what it holds.
    pub async fn versions(&mut self) -> Result<BTreeMap<String, i64>> {
        let rows = self
            .client
            .query("SELECT name, version FROM tenants", &[])
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Removes a tenant and everything it holds; `false` when there was none.
    pub async fn delete(&mut self, name: &str) -> Result<bool> {
        let tx = self.client.transaction().await?;
        let gone = tx
            .query_opt(
                "DELETE FROM tenants WHERE name = $1 RETURNING version",
                &[&name],
            )
            .await?;
        if let Some(row) = &gone {
            notify(&tx, name, row.get::<_, i64>(0) + 1).await?;
        }
        tx.commit().await?;
        Ok(gone.is_some())
    }

    /// A read-only transaction that sees one consistent state of every table.
    async fn read_snapshot(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?)
    }
}

/// Runs the strategy validator over some of a tenant's strategies; `Err` names the field.
fn check_strategies(
    validator: Option<&StrategyValidator>,
    config: &TenantConfig,
    which: std::ops::Range<usize>,
) -> Result<(), (String, String)> {
    let Some(validator) = validator else {
        return Ok(());
    };
    for i in which {
        if let Some(s) = config.strategies.get(i) {
            validator(s).map_err(|problem| {
                (
                    format!("strategies[{i}].document"),
                    format!("strategy {:?} version {}: {problem}", s.name, s.version),
                )
            })?;
        }
    }
    Ok(())
}

/// Writes a tenant's own row (inserting it, or with `replace` updating the one of that name and
/// raising its version); returns its id and version.
async fn upsert_tenant(
    tx: &Transaction<'_>,
    config: &TenantConfig,
    replace: bool,
) -> Result<(i64, i64), tokio_postgres::Error> {
    let conflict = if replace {
        "ON CONFLICT (name) DO UPDATE SET
             domain = EXCLUDED.domain, realm = EXCLUDED.realm, digest = EXCLUDED.digest,
             authenticate = EXCLUDED.authenticate, wrap_up_secs = EXCLUDED.wrap_up_secs,
             options = EXCLUDED.options, time_zone = EXCLUDED.time_zone,
             service_level_secs = EXCLUDED.service_level_secs,
             short_abandon_secs = EXCLUDED.short_abandon_secs, version = tenants.version + 1"
    } else {
        ""
    };
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tenants (name, domain, realm, digest, authenticate, wrap_up_secs, options,
                     time_zone, service_level_secs, short_abandon_secs)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) {conflict}
                 RETURNING id, version"
            ),
            &[
                &config.name,
                &config.domain,
                &config.realm,
                &config.digest,
                &config.authenticate,
                // At most a day: Tenant::from_config checked.
                &i32::try_from(config.wrap_up_secs).unwrap_or(i32::MAX),
                &json(&config.options),
                &config.time_zone,
                &i32::try_from(config.stats.service_level_secs).unwrap_or(i32::MAX),
                &i32::try_from(config.stats.short_abandon_secs).unwrap_or(i32::MAX),
            ],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Writes one change to a tenant's rows.
async fn apply(tx: &Transaction<'_>, id: i64, change: RowChange) -> Result<(), ProvisionError> {
    // The row's own columns, then the tenant's id and the row's position.
    let insert = |table: &str| {
        format!(
            "INSERT INTO {table} SELECT * FROM jsonb_populate_record(NULL::{table},
                 $1::jsonb || jsonb_build_object('tenant_id', $2::bigint, 'position', $3::integer))"
        )
    };
    match change {
        RowChange::Insert { table, row } => {
            let next: i32 = tx
                .query_one(
                    &format!(
                        "SELECT coalesce(max(position) + 1, 0) FROM {table} WHERE tenant_id = $1"
                    ),
                    &[&id],
                )
                .await?
                .get(0);
            tx.execute(&insert(table), &[&row, &id, &next]).await?;
        }
        RowChange::Replace {
            table,
            key_column,
            key,
            row,
        } => {
            let position: i32 = tx
                .query_one(
                    &format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND {key_column} = $2 RETURNING position"
                    ),
                    &[&id, &key],
                )
                .await?
                .get(0);
            tx.execute(&insert(table), &[&row, &id, &position]).await?;
        }
        RowChange::Delete {
            table,
            key_column,
            key,
        } => {
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant_id = $1 AND {key_column} = $2"),
                &[&id, &key],
            )
            .await?;
        }
        RowChange::DeleteStrategyVersion { name, version } => {
            tx.execute(
                "DELETE FROM strategies WHERE tenant_id = $1 AND name = $2 AND version = $3",
                &[&id, &name, &i32::try_from(version).unwrap_or(i32::MAX)],
            )
            .await?;
        }
        RowChange::ReplaceAll { table, rows } => {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
                .await?;
            insert_rows(tx, table, id, rows.into_iter()).await?;
        }
    }
    Ok(())
}

const TENANT_COLUMNS: &str = "SELECT id, name, domain, realm, digest, authenticate, wrap_up_secs, options, \
     time_zone, service_level_secs, short_abandon_secs, version FROM tenants";

async fn notify(
    tx: &Transaction<'_>,
    tenant: &str,
    version: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &format!("{tenant}:{version}")],
    )
    .await?;
    Ok(())
}

/// Inserts every object of `config` under tenant `id`, each list in its order: one statement
/// per table, its rows sent as one JSON array (`jsonb_populate_recordset`), so a tenant of
/// tens of thousands of objects costs a dozen round trips, not one per object.
async fn write_objects(
    tx: &Transaction<'_>,
    id: i64,
    c: &TenantConfig,
) -> Result<(), tokio_postgres::Error> {
    use provision::*;
    insert_all(tx, id, c, &DNS).await?;
    insert_all(tx, id, c, &SKILLS).await?;
    insert_all(tx, id, c, &AGENT_GROUPS).await?;
    insert_all(tx, id, c, &QUEUES).await?;
    insert_all(tx, id, c, &PLACES).await?;
    insert_all(tx, id, c, &AGENTS).await?;
    insert_all(tx, id, c, &ROUTING_POINTS).await?;
    insert_all(tx, id, c, &TRUNKS).await?;
    insert_all(tx, id, c, &MEDIA_SERVERS).await?;
    insert_all(tx, id, c, &DIAL_PLAN).await?;
    insert_all(tx, id, c, &STRATEGIES).await?;
    insert_all(tx, id, c, &API_KEYS).await?;
    Ok(())
}

async fn insert_all<T>(
    tx: &Transaction<'_>,
    id: i64,
    c: &TenantConfig,
    kind: &Kind<T>,
) -> Result<(), tokio_postgres::Error> {
    insert_rows(tx, kind.list, id, (kind.items)(c).iter().map(kind.row)).await
}

/// Inserts `rows` (objects naming the columns of `table` but `tenant_id` and `position`) in
/// one statement, positioned in their order.
async fn insert_rows(
    tx: &Transaction<'_>,
    table: &str,
    id: i64,
    rows: impl Iterator<Item = Value>,
) -> Result<(), tokio_postgres::Error> {
    let rows: Vec<Value> = rows
        .enumerate()
        .map(|(position, mut row)| {
            if let Value::Object(columns) = &mut row {
                columns.insert("tenant_id".into(), id.into());
                columns.insert("position".into(), position.into());
            }
            row
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    tx.execute(
        &format!("INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)"),
        &[&Value::Array(rows)],
    )
    .await?;
    Ok(())
}

/// A tenant row and its objects.
async fn read_tenant(tx: &impl GenericClient, row: &Row) -> Result<Versioned> {
    let id: i64 = row.get("id");
    let rows = |table: &str, columns: &str| {
        format!("SELECT {columns} FROM {table} WHERE tenant_id = $1 ORDER BY position")
    };
    let named = |rows: Vec<Row>| -> Result<Vec<NamedConfig>> {
        rows.iter()
            .map(|r| {
                Ok(NamedConfig {
                    name: r.get("name"),
                    options: from_json(r.get("options"))?,
                })
            })
            .collect()
    };
    let mut config = TenantConfig {
        name: row.get("name"),
        domain: row.get("domain"),
        realm: row.get("realm"),
        digest: row.get("digest"),
        authenticate: row.get("authenticate"),
        wrap_up_secs: uint(row.get("wrap_up_secs")),
        options: from_json(row.get("options"))?,
        dns: Vec::new(),
        skills: named(tx.query(&rows("skills", "name, options"), &[&id]).await?)?,
        agent_groups: named(
            tx.query(&rows("agent_groups", "name, options"), &[&id])
                .await?,
        )?,
        places: Vec::new(),
        agents: Vec::new(),
        routing_points: Vec::new(),
        queues: named(tx.query(&rows("queues", "name, options"), &[&id]).await?)?,
        trunks: Vec::new(),
        media_servers: Vec::new(),
        dial_plan: Vec::new(),
        strategies: Vec::new(),
        api_keys: Vec::new(),
        time_zone: row.get("time_zone"),
        stats: StatsConfig {
            service_level_secs: uint(row.get("service_level_secs")),
            short_abandon_secs: uint(row.get("short_abandon_secs")),
        },
    };
    for r in tx.query(&rows("dns", "*"), &[&id]).await? {
        config.dns.push(DnConfig {
            number: r.get("number"),
            kind: kind_from_name(r.get("kind"))?,
            password: r.get("password"),
            digest: r.get("digest"),
            authenticate: r.get("authenticate"),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("places", "*"), &[&id]).await? {
        config.places.push(PlaceConfig {
            name: r.get("name"),
            dns: r.get("dns"),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("agents", "*"), &[&id]).await? {
        config.agents.push(AgentConfig {
            id: r.get("id"),
            name: r.get("name"),
            login_code: r.get("login_code"),
            place: r.get("place"),
            skills: from_json(r.get("skills"))?,
            groups: r.get("groups"),
            wrap_up_secs: r.get::<_, Option<i32>>("wrap_up_secs").map(uint),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("routing_points", "*"), &[&id]).await? {
        config.routing_points.push(RoutingPointConfig {
            number: r.get("number"),
            strategy: r.get("strategy"),
            default_destination: r.get("default_destination"),
            timeout_secs: uint(r.get("timeout_secs")),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("trunks", "*"), &[&id]).await? {
        config.trunks.push(TrunkConfig {
            name: r.get("name"),
            inbound: r.get("inbound"),
            gateway: r.get("gateway"),
            caller_id: from_json(r.get("caller_id"))?,
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("media_servers", "*"), &[&id]).await? {
        config.media_servers.push(MediaServerConfig {
            name: r.get("name"),
            address: r.get("address"),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("dial_plan", "*"), &[&id]).await? {
        config.dial_plan.push(DialRuleConfig {
            pattern: r.get("pattern"),
            rewrite: r.get("rewrite"),
            destination: r.get("destination"),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx.query(&rows("strategies", "*"), &[&id]).await? {
        config.strategies.push(StrategyConfig {
            name: r.get("name"),
            version: uint(r.get("version")),
            document: r.get("document"),
            options: from_json(r.get("options"))?,
        });
    }
    for r in tx
        .query(&rows("api_keys", "name, hash, scope"), &[&id])
        .await?
    {
        config.api_keys.push(ApiKeyConfig {
            name: r.get("name"),
            hash: r.get("hash"),
            scope: KeyScope::parse(r.get("scope")).unwrap_or(KeyScope::Stats),
        });
    }
    Ok(Versioned {
        config,
        version: row.get("version"),
    })
}

/// The columns' CHECK constraints keep these non-negative.
fn uint(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn from_json<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn kind_from_name(name: String) -> Result<DnKind> {
    from_json(Value::String(name))
}
