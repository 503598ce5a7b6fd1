//! The configuration in PostgreSQL: one row per object, in the tables of
//! `actors/migrations`, which [`ConfigStore::connect`] applies. A tenant is written whole, in one
//! transaction that also raises its version and tells every listening node
//! (`NOTIFY switchboard_config, '<tenant>:<version>'`); it is read whole, from one snapshot of
//! the database.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Transaction};

use super::{
    AgentConfig, DialRuleConfig, DnConfig, DnKind, MediaServerConfig, NamedConfig, PlaceConfig,
    RoutingPointConfig, StrategyConfig, Tenant, TenantConfig, TrunkConfig,
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

/// The tables that hold a tenant's objects, children of `tenants`.
const OBJECT_TABLES: [&str; 11] = [
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
            .map_err(|e| Error::Migration(e.to_string()))?;
        for migration in report.applied_migrations() {
            tracing::info!(migration = %migration, "configuration schema migrated");
        }
        Ok(Self { client })
    }

    /// A store on a connection already made (and migrated).
    pub(super) fn from_client(client: Client) -> Self {
        Self { client }
    }

    /// Writes a tenant whole, replacing what was stored under its name, and returns its new
    /// version. The configuration is checked first; nothing is written unless all of it is
    /// valid.
    pub async fn import(&mut self, config: &TenantConfig) -> Result<i64> {
        Tenant::from_config(config)?;
        let tx = self.client.transaction().await?;
        let row = tx
            .query_one(
                "INSERT INTO tenants (name, domain, realm, digest, authenticate, wrap_up_secs, options)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (name) DO UPDATE SET
                     domain = EXCLUDED.domain, realm = EXCLUDED.realm, digest = EXCLUDED.digest,
                     authenticate = EXCLUDED.authenticate, wrap_up_secs = EXCLUDED.wrap_up_secs,
                     options = EXCLUDED.options, version = tenants.version + 1
                 RETURNING id, version",
                &[
                    &config.name,
                    &config.domain,
                    &config.realm,
                    &config.digest,
                    &config.authenticate,
                    // At most a day: Tenant::from_config checked.
                    &i32::try_from(config.wrap_up_secs).unwrap_or(i32::MAX),
                    &json(&config.options),
                ],
            )
            .await?;
        let (id, version): (i64, i64) = (row.get(0), row.get(1));
        for table in OBJECT_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant_id = $1"), &[&id])
                .await?;
        }
        write_objects(&tx, id, config).await?;
        notify(&tx, &config.name, version).await?;
        tx.commit().await?;
        Ok(version)
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

const TENANT_COLUMNS: &str = "SELECT id, name, domain, realm, digest, authenticate, wrap_up_secs, options, version FROM tenants";

async fn notify(tx: &Transaction<'_>, tenant: &str, version: i64) -> Result<()> {
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
async fn write_objects(tx: &Transaction<'_>, id: i64, c: &TenantConfig) -> Result<()> {
    use serde_json::json;
    let dns = c.dns.iter().enumerate().map(|(pos, d)| {
        json!({
            "tenant_id": id, "number": d.number, "position": pos, "kind": d.kind,
            "password": d.password, "digest": d.digest, "authenticate": d.authenticate,
            "options": d.options,
        })
    });
    insert_rows(tx, "dns", dns).await?;
    for (table, list) in [
        ("skills", &c.skills),
        ("agent_groups", &c.agent_groups),
        ("queues", &c.queues),
    ] {
        let rows = list.iter().enumerate().map(|(pos, n)| {
            json!({ "tenant_id": id, "name": n.name, "position": pos, "options": n.options })
        });
        insert_rows(tx, table, rows).await?;
    }
    let places = c.places.iter().enumerate().map(|(pos, p)| {
        json!({
            "tenant_id": id, "name": p.name, "position": pos, "dns": p.dns, "options": p.options,
        })
    });
    insert_rows(tx, "places", places).await?;
    let agents = c.agents.iter().enumerate().map(|(pos, a)| {
        json!({
            "tenant_id": id, "id": a.id, "position": pos, "name": a.name,
            "login_code": a.login_code, "place": a.place, "skills": a.skills, "groups": a.groups,
            "wrap_up_secs": a.wrap_up_secs, "options": a.options,
        })
    });
    insert_rows(tx, "agents", agents).await?;
    let routing_points = c.routing_points.iter().enumerate().map(|(pos, r)| {
        json!({
            "tenant_id": id, "number": r.number, "position": pos, "strategy": r.strategy,
            "default_destination": r.default_destination, "timeout_secs": r.timeout_secs,
            "options": r.options,
        })
    });
    insert_rows(tx, "routing_points", routing_points).await?;
    let trunks = c.trunks.iter().enumerate().map(|(pos, t)| {
        json!({
            "tenant_id": id, "name": t.name, "position": pos, "inbound": t.inbound,
            "gateway": t.gateway, "caller_id": t.caller_id, "options": t.options,
        })
    });
    insert_rows(tx, "trunks", trunks).await?;
    let media_servers = c.media_servers.iter().enumerate().map(|(pos, m)| {
        json!({
            "tenant_id": id, "name": m.name, "position": pos, "address": m.address,
            "options": m.options,
        })
    });
    insert_rows(tx, "media_servers", media_servers).await?;
    let dial_plan = c.dial_plan.iter().enumerate().map(|(pos, r)| {
        json!({
            "tenant_id": id, "position": pos, "pattern": r.pattern, "rewrite": r.rewrite,
            "destination": r.destination, "options": r.options,
        })
    });
    insert_rows(tx, "dial_plan", dial_plan).await?;
    let strategies = c.strategies.iter().enumerate().map(|(pos, s)| {
        json!({
            "tenant_id": id, "name": s.name, "version": s.version, "position": pos,
            "document": s.document, "options": s.options,
        })
    });
    insert_rows(tx, "strategies", strategies).await?;
    Ok(())
}

/// Inserts `rows` (objects naming every column of `table`) in one statement.
async fn insert_rows(
    tx: &Transaction<'_>,
    table: &str,
    rows: impl Iterator<Item = Value>,
) -> Result<()> {
    let rows = Value::Array(rows.collect());
    if rows.as_array().is_some_and(Vec::is_empty) {
        return Ok(());
    }
    tx.execute(
        &format!("INSERT INTO {table} SELECT * FROM jsonb_populate_recordset(NULL::{table}, $1)"),
        &[&rows],
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
