//! The provisioning API, `switchboard.provisioning.v1.Provisioning` (see
//! `proto/provisioning.proto`): reads from the node's snapshot of the configuration, writes
//! through the PostgreSQL store, each returning once this node's snapshot holds it.

mod bans;
mod convert;

use std::sync::Arc;
use std::time::Duration;

use switchboard_actors::tenant::postgres::ConfigStore;
use switchboard_actors::tenant::provision::{
    self, AGENT_GROUPS, AGENTS, API_KEYS, DNS, Kind, MEDIA_SERVERS, PLACES, ProvisionError, QUEUES,
    ROUTING_POINTS, SKILLS, STRATEGIES, StrategyValidator, TRUNKS,
};
use switchboard_actors::tenant::{ApiKeyConfig, Directory, KeyScope, Tenant, hash_api_key};
use switchboard_proto::provisioning as pb;
use tokio::sync::{Mutex, MutexGuard, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Keys};
use convert::Message;

pub(crate) use bans::Bans;
pub(crate) use pb::provisioning_server::ProvisioningServer;

/// How long a write waits for this node's snapshot to hold it before answering anyway (the
/// change is committed; the node catches up when PostgreSQL's notification arrives).
const SETTLE: Duration = Duration::from_secs(5);

/// How long connecting to PostgreSQL may take before a write answers UNAVAILABLE.
const CONNECT: Duration = Duration::from_secs(3);

/// How long a write may take before it answers UNAVAILABLE (a PostgreSQL that stopped
/// answering without closing the connection); the connection is then made anew.
const WRITE: Duration = Duration::from_secs(10);

pub(crate) struct Provisioning {
    /// The node's current snapshot.
    directory: watch::Receiver<Arc<Directory>>,
    /// Where writes go; `None` on a node serving its embedded configuration.
    writer: Option<Writer>,
    keys: Keys,
    /// The node's bans of SIP sources; none in a test of provisioning alone.
    bans: Option<bans::Bans>,
}

/// The connection writes go through, made again when it is lost.
struct Writer {
    url: String,
    store: Mutex<Option<ConfigStore>>,
    validator: Option<StrategyValidator>,
}

impl Provisioning {
    pub(crate) fn new(
        directory: watch::Receiver<Arc<Directory>>,
        postgres: Option<String>,
        admin_key: Option<String>,
        validator: Option<StrategyValidator>,
    ) -> Self {
        let directory_for_keys = directory.clone();
        Self {
            directory,
            writer: postgres.map(|url| Writer {
                url,
                store: Mutex::new(None),
                validator,
            }),
            keys: Keys::new(directory_for_keys, admin_key),
            bans: None,
        }
    }

    /// Serves the node's bans too.
    pub(crate) fn with_bans(self, bans: bans::Bans) -> Self {
        Self {
            bans: Some(bans),
            ..self
        }
    }

    fn bans(&self) -> Result<&bans::Bans, Status> {
        self.bans
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node keeps no bans"))
    }

    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        self.keys.caller(metadata)
    }

    fn tenant(&self, metadata: &MetadataMap, requested: &str) -> Result<String, Status> {
        self.keys.tenant(metadata, requested)
    }

    fn admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        self.keys.admin(metadata)
    }

    /// The tenant as this node holds it.
    fn held(&self, tenant: &str) -> Result<Arc<Tenant>, Status> {
        self.directory
            .borrow()
            .by_name(tenant)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("tenant {tenant:?} not found")))
    }

    fn writer(&self) -> Result<&Writer, Status> {
        self.writer.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node serves its embedded configuration, which is read-only: \
                 provisioning writes need PostgreSQL ([stores] postgres, --postgres or \
                 SWITCHBOARD_POSTGRES)",
            )
        })
    }

    /// Runs `op` on the PostgreSQL store (one at a time on this node).
    async fn stored<T>(
        &self,
        op: impl AsyncFnOnce(&mut ConfigStore) -> Result<T, ProvisionError>,
    ) -> Result<T, Status> {
        let mut store = self.writer()?.connect().await?;
        let Some(conn) = store.as_mut() else {
            return Err(Status::unavailable("postgresql: not connected"));
        };
        let result = match tokio::time::timeout(WRITE, op(conn)).await {
            Ok(result) => result,
            Err(_) => Err(ProvisionError::Unavailable(format!(
                "no answer within {} s",
                WRITE.as_secs()
            ))),
        };
        if let Err(ProvisionError::Unavailable(e)) = &result {
            tracing::warn!(error = %e, "configuration database unavailable for writes");
            *store = None;
        }
        result.map_err(status)
    }

    /// Runs a change of `tenant` and waits until this node's snapshot holds it.
    async fn write(
        &self,
        tenant: &str,
        op: impl AsyncFnOnce(&mut ConfigStore, Option<&Tenant>) -> Result<Tenant, ProvisionError>,
    ) -> Result<Tenant, Status> {
        let held = self.directory.borrow().by_name(tenant).cloned();
        let t = self.stored(async |s| op(s, held.as_deref()).await).await?;
        tracing::info!(
            tenant,
            version = t.version,
            "configuration written over the API"
        );
        self.settle(&t.name, Some(t.version)).await;
        Ok(t)
    }

    /// Waits (a while) until this node's snapshot holds `tenant` at `version` or later, or
    /// no longer holds it when `version` is `None`.
    async fn settle(&self, tenant: &str, version: Option<i64>) {
        let mut directory = self.directory.clone();
        let reached = directory.wait_for(|d| match version {
            Some(v) => d.version(tenant).is_some_and(|held| held >= v),
            None => d.by_name(tenant).is_none(),
        });
        if !matches!(tokio::time::timeout(SETTLE, reached).await, Ok(Ok(_))) {
            tracing::warn!(
                tenant,
                "a committed change has not reached this node's snapshot yet"
            );
        }
    }

    async fn create<M: Message>(
        &self,
        metadata: &MetadataMap,
        tenant: &str,
        kind: &'static Kind<M::Config>,
        message: Option<M>,
    ) -> Result<Response<M>, Status>
    where
        M::Config: Clone + Send + Sync,
    {
        let tenant = self.tenant(metadata, tenant)?;
        let item = required(kind, message)?;
        let key = (kind.key)(&item).to_owned();
        let t = self
            .write(&tenant, async |s, held| {
                s.create(&tenant, held, kind, item).await
            })
            .await?;
        object(kind, &t, &key)
    }

    async fn get<M: Message>(
        &self,
        metadata: &MetadataMap,
        request: pb::GetRequest,
        kind: &'static Kind<M::Config>,
    ) -> Result<Response<M>, Status> {
        let tenant = self.tenant(metadata, &request.tenant)?;
        let held = self.held(&tenant)?;
        object(kind, &held, &request.id)
    }

    async fn update<M: Message>(
        &self,
        metadata: &MetadataMap,
        (tenant, id): (&str, &str),
        kind: &'static Kind<M::Config>,
        message: Option<M>,
    ) -> Result<Response<M>, Status>
    where
        M::Config: Clone + Send + Sync,
    {
        let tenant = self.tenant(metadata, tenant)?;
        let item = required(kind, message)?;
        let t = self
            .write(&tenant, async |s, held| {
                s.update(&tenant, held, kind, id, item).await
            })
            .await?;
        object(kind, &t, id)
    }

    async fn delete<T: Clone + Send + Sync>(
        &self,
        metadata: &MetadataMap,
        request: pb::DeleteRequest,
        kind: &'static Kind<T>,
    ) -> Result<Response<pb::Deleted>, Status> {
        let tenant = self.tenant(metadata, &request.tenant)?;
        self.write(&tenant, async |s, held| {
            s.remove(&tenant, held, kind, &request.id).await
        })
        .await?;
        Ok(Response::new(pb::Deleted {}))
    }

    /// A page of a tenant's objects, by id.
    fn list<M: Message>(
        &self,
        metadata: &MetadataMap,
        request: &pb::ListRequest,
        kind: &'static Kind<M::Config>,
    ) -> Result<(Vec<M>, String), Status> {
        let tenant = self.held(&self.tenant(metadata, &request.tenant)?)?;
        let items = (kind.items)(&tenant.config)
            .iter()
            .map(|x| ((kind.key)(x).to_owned(), x));
        page(items, request, M::from_config)
    }
}

impl Writer {
    /// The connection, made (again) if there is none.
    async fn connect(&self) -> Result<MutexGuard<'_, Option<ConfigStore>>, Status> {
        let mut store = self.store.lock().await;
        if store.as_ref().is_none_or(ConfigStore::is_closed) {
            let connected = tokio::time::timeout(CONNECT, ConfigStore::connect(&self.url)).await;
            let mut connected = match connected {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(Status::unavailable(format!("postgresql: {e}"))),
                Err(_) => {
                    return Err(Status::unavailable(format!(
                        "postgresql: no connection within {} s",
                        CONNECT.as_secs()
                    )));
                }
            };
            if let Some(v) = &self.validator {
                connected.set_strategy_validator(v.clone());
            }
            *store = Some(connected);
        }
        Ok(store)
    }
}

fn status(e: ProvisionError) -> Status {
    let message = e.to_string();
    match e {
        ProvisionError::NotFound(_) => Status::not_found(message),
        ProvisionError::AlreadyExists(_) => Status::already_exists(message),
        ProvisionError::Invalid { .. } => Status::invalid_argument(message),
        ProvisionError::Conflict(_) => Status::failed_precondition(message),
        ProvisionError::Unavailable(_) => Status::unavailable(message),
        ProvisionError::Refused { .. } => Status::internal(message),
        ProvisionError::Unreadable(_) => Status::data_loss(message),
    }
}

fn required<M: Message, T>(kind: &Kind<T>, message: Option<M>) -> Result<M::Config, Status> {
    message
        .map(M::into_config)
        .ok_or_else(|| Status::invalid_argument(format!("{}: required", kind.field)))
}

/// The object named `id` of a tenant, as a message.
fn object<M: Message>(
    kind: &Kind<M::Config>,
    tenant: &Tenant,
    id: &str,
) -> Result<Response<M>, Status> {
    kind.find(&tenant.config, id)
        .map(|x| Response::new(M::from_config(x)))
        .ok_or_else(|| Status::not_found(format!("{} {id:?} not found", kind.what)))
}

/// The default and the largest page.
const PAGE: (u32, u32) = (100, 1000);

/// One page of `items` (each with the key they are ordered by) after the page token's key,
/// and the token of the next page (empty after the last).
fn page<T, M>(
    items: impl Iterator<Item = (String, T)>,
    request: &pb::ListRequest,
    to_message: impl Fn(T) -> M,
) -> Result<(Vec<M>, String), Status> {
    let after = match request.page_token.as_str() {
        "" => None,
        token => {
            Some(unhex(token).ok_or_else(|| Status::invalid_argument("page_token: not a token"))?)
        }
    };
    let size = match request.page_size {
        0 => PAGE.0,
        n => n.min(PAGE.1),
    } as usize;
    let mut items: Vec<(String, T)> = items
        .filter(|(key, _)| after.as_ref().is_none_or(|a| key > a))
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let next = match items.get(size) {
        Some(_) => switchboard_sip::hex(items[size - 1].0.as_bytes()),
        None => String::new(),
    };
    let page = items
        .into_iter()
        .take(size)
        .map(|(_, x)| to_message(x))
        .collect();
    Ok((page, next))
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// A new API key: 32 random bytes, in hex, after a prefix that says what it is.
fn new_api_key() -> String {
    format!("sbk_{}", switchboard_sip::token::<32>())
}

/// `name@version` or `name`.
fn strategy_id(id: &str) -> Result<(&str, Option<u32>), Status> {
    match id.rsplit_once('@') {
        None => Ok((id, None)),
        Some((name, version)) => version
            .parse()
            .map(|v| (name, Some(v)))
            .map_err(|_| Status::invalid_argument(format!("id: {id:?} is not name@version"))),
    }
}

fn rule_index(id: &str) -> Result<usize, Status> {
    id.parse()
        .map_err(|_| Status::invalid_argument(format!("id: {id:?} is not a rule's index")))
}

fn rule_message(
    index: usize,
    rule: &switchboard_actors::tenant::DialRuleConfig,
) -> pb::DialPlanRule {
    pb::DialPlanRule {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        ..pb::DialPlanRule::from_config(rule)
    }
}

fn tenant_message(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        version: t.version,
        ..pb::Tenant::from_config(&t.config)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The trait's implementation: the calls written out below, and the five calls of each type of
/// object named by a key, which are alike but for their names.
macro_rules! provisioning {
    (
        $(
            $kind:ident: pb::$message:ident in $field:ident,
            $create:ident(pb::$create_request:ident), $get:ident,
            $update:ident(pb::$update_request:ident), $delete:ident,
            $list:ident -> pb::$page:ident { $items:ident };
        )*
        { $($calls:tt)* }
    ) => {
        #[tonic::async_trait]
        impl pb::provisioning_server::Provisioning for Provisioning {
            $($calls)*
            $(
                async fn $create(&self, r: Request<pb::$create_request>) -> Reply<pb::$message> {
                    let (metadata, _, r) = r.into_parts();
                    self.create(&metadata, &r.tenant, &$kind, r.$field).await
                }
                async fn $get(&self, r: Request<pb::GetRequest>) -> Reply<pb::$message> {
                    let (metadata, _, r) = r.into_parts();
                    self.get(&metadata, r, &$kind).await
                }
                async fn $update(&self, r: Request<pb::$update_request>) -> Reply<pb::$message> {
                    let (metadata, _, r) = r.into_parts();
                    self.update(&metadata, (&r.tenant, &r.id), &$kind, r.$field).await
                }
                async fn $delete(&self, r: Request<pb::DeleteRequest>) -> Reply<pb::Deleted> {
                    let (metadata, _, r) = r.into_parts();
                    self.delete(&metadata, r, &$kind).await
                }
                async fn $list(&self, r: Request<pb::ListRequest>) -> Reply<pb::$page> {
                    let (metadata, _, r) = r.into_parts();
                    let ($items, next_page_token) = self.list(&metadata, &r, &$kind)?;
                    Ok(Response::new(pb::$page { $items, next_page_token }))
                }
            )*
        }
    };
}

provisioning! {
    DNS: pb::Dn in dn,
        create_dn(pb::CreateDnRequest), get_dn,
        update_dn(pb::UpdateDnRequest), delete_dn,
        list_dns -> pb::DnPage { dns };
    SKILLS: pb::Skill in skill,
        create_skill(pb::CreateSkillRequest), get_skill,
        update_skill(pb::UpdateSkillRequest), delete_skill,
        list_skills -> pb::SkillPage { skills };
    AGENT_GROUPS: pb::AgentGroup in agent_group,
        create_agent_group(pb::CreateAgentGroupRequest), get_agent_group,
        update_agent_group(pb::UpdateAgentGroupRequest), delete_agent_group,
        list_agent_groups -> pb::AgentGroupPage { agent_groups };
    PLACES: pb::Place in place,
        create_place(pb::CreatePlaceRequest), get_place,
        update_place(pb::UpdatePlaceRequest), delete_place,
        list_places -> pb::PlacePage { places };
    AGENTS: pb::Agent in agent,
        create_agent(pb::CreateAgentRequest), get_agent,
        update_agent(pb::UpdateAgentRequest), delete_agent,
        list_agents -> pb::AgentPage { agents };
    ROUTING_POINTS: pb::RoutingPoint in routing_point,
        create_routing_point(pb::CreateRoutingPointRequest), get_routing_point,
        update_routing_point(pb::UpdateRoutingPointRequest), delete_routing_point,
        list_routing_points -> pb::RoutingPointPage { routing_points };
    QUEUES: pb::Queue in queue,
        create_queue(pb::CreateQueueRequest), get_queue,
        update_queue(pb::UpdateQueueRequest), delete_queue,
        list_queues -> pb::QueuePage { queues };
    TRUNKS: pb::Trunk in trunk,
        create_trunk(pb::CreateTrunkRequest), get_trunk,
        update_trunk(pb::UpdateTrunkRequest), delete_trunk,
        list_trunks -> pb::TrunkPage { trunks };
    MEDIA_SERVERS: pb::MediaServer in media_server,
        create_media_server(pb::CreateMediaServerRequest), get_media_server,
        update_media_server(pb::UpdateMediaServerRequest), delete_media_server,
        list_media_servers -> pb::MediaServerPage { media_servers };
    // The calls written out: tenants, API keys, dial plan rules and strategies.
    {
        async fn create_tenant(
            &self,
            r: Request<pb::CreateTenantRequest>,
        ) -> Reply<pb::CreateTenantResponse> {
            let (metadata, _, r) = r.into_parts();
            self.admin(&metadata)?;
            let mut config = r
                .tenant
                .ok_or_else(|| Status::invalid_argument("tenant: required"))?
                .into_config();
            let key = new_api_key();
            config.api_keys.push(ApiKeyConfig {
                name: "default".into(),
                hash: hash_api_key(&key),
                scope: KeyScope::Full,
            });
            let t = self
                .stored(async |s| s.create_tenant(&config).await)
                .await?;
            self.settle(&t.name, Some(t.version)).await;
            tracing::info!(tenant = %t.name, "tenant created");
            Ok(Response::new(pb::CreateTenantResponse {
                tenant: Some(tenant_message(&t)),
                api_key: key,
            }))
        }

        async fn get_tenant(&self, r: Request<pb::GetTenantRequest>) -> Reply<pb::Tenant> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            let held = self.held(&tenant)?;
            Ok(Response::new(tenant_message(&held)))
        }

        async fn update_tenant(&self, r: Request<pb::UpdateTenantRequest>) -> Reply<pb::Tenant> {
            let (metadata, _, r) = r.into_parts();
            let settings = r
                .tenant
                .ok_or_else(|| Status::invalid_argument("tenant: required"))?
                .into_config();
            let tenant = self.tenant(&metadata, &settings.name)?;
            let settings = switchboard_actors::tenant::TenantConfig {
                name: tenant.clone(),
                ..settings
            };
            let t = self
                .write(&tenant, async |s, held| {
                    s.update_settings(held, &settings).await
                })
                .await?;
            Ok(Response::new(tenant_message(&t)))
        }

        async fn delete_tenant(&self, r: Request<pb::DeleteTenantRequest>) -> Reply<pb::Deleted> {
            let (metadata, _, r) = r.into_parts();
            self.admin(&metadata)?;
            let deleted = self
                .stored(async |s| s.delete(&r.tenant).await.map_err(ProvisionError::from))
                .await?;
            if !deleted {
                return Err(Status::not_found(format!(
                    "tenant {:?} not found",
                    r.tenant
                )));
            }
            self.settle(&r.tenant, None).await;
            tracing::info!(tenant = %r.tenant, "tenant deleted");
            Ok(Response::new(pb::Deleted {}))
        }

        async fn list_tenants(&self, r: Request<pb::ListRequest>) -> Reply<pb::TenantPage> {
            let (metadata, _, r) = r.into_parts();
            let own = match self.caller(&metadata)? {
                Caller::Admin => None,
                Caller::Tenant(own) => Some(own),
                Caller::Reader(_) => return Err(crate::auth::read_only()),
            };
            let directory = self.directory.borrow().clone();
            let tenants = directory
                .tenants()
                .filter(|t| own.as_ref().is_none_or(|own| *own == t.name))
                .map(|t| (t.name.clone(), t.as_ref()));
            let (tenants, next_page_token) = page(tenants, &r, tenant_message)?;
            Ok(Response::new(pb::TenantPage {
                tenants,
                next_page_token,
            }))
        }

        async fn list_bans(&self, r: Request<pb::ListBansRequest>) -> Reply<pb::BanList> {
            self.admin(r.metadata())?;
            let bans = self.bans()?.list().await?;
            Ok(Response::new(pb::BanList { bans }))
        }

        async fn lift_ban(&self, r: Request<pb::LiftBanRequest>) -> Reply<pb::Deleted> {
            let (metadata, _, r) = r.into_parts();
            self.admin(&metadata)?;
            self.bans()?.lift(&r.address).await?;
            Ok(Response::new(pb::Deleted {}))
        }

        async fn create_api_key(
            &self,
            r: Request<pb::CreateApiKeyRequest>,
        ) -> Reply<pb::CreateApiKeyResponse> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            let asked = r.api_key.unwrap_or_default();
            let scope = KeyScope::parse(&asked.scope).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "api_key.scope: {:?} is neither full nor stats",
                    asked.scope
                ))
            })?;
            let name = asked.name;
            let secret = new_api_key();
            let key = ApiKeyConfig {
                name: name.clone(),
                hash: hash_api_key(&secret),
                scope,
            };
            self.write(&tenant, async |s, held| {
                s.create(&tenant, held, &API_KEYS, key).await
            })
            .await?;
            Ok(Response::new(pb::CreateApiKeyResponse {
                api_key: Some(pb::ApiKey {
                    name,
                    scope: scope.as_str().to_owned(),
                }),
                secret,
            }))
        }

        async fn get_api_key(&self, r: Request<pb::GetRequest>) -> Reply<pb::ApiKey> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            API_KEYS
                .find(&tenant.config, &r.id)
                .map(|k| {
                    Response::new(pb::ApiKey {
                        name: k.name.clone(),
                        scope: k.scope.as_str().to_owned(),
                    })
                })
                .ok_or_else(|| Status::not_found(format!("API key {:?} not found", r.id)))
        }

        async fn delete_api_key(&self, r: Request<pb::DeleteRequest>) -> Reply<pb::Deleted> {
            let (metadata, _, r) = r.into_parts();
            self.delete(&metadata, r, &API_KEYS).await
        }

        async fn list_api_keys(&self, r: Request<pb::ListRequest>) -> Reply<pb::ApiKeyPage> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            let keys = tenant.config.api_keys.iter().map(|k| (k.name.clone(), k));
            let (api_keys, next_page_token) = page(keys, &r, |k| pb::ApiKey {
                name: k.name.clone(),
                scope: k.scope.as_str().to_owned(),
            })?;
            Ok(Response::new(pb::ApiKeyPage {
                api_keys,
                next_page_token,
            }))
        }

        async fn create_dial_plan_rule(
            &self,
            r: Request<pb::CreateDialPlanRuleRequest>,
        ) -> Reply<pb::DialPlanRule> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            let rule = required(&provision::DIAL_PLAN, r.rule)?;
            let index = r.index.map(|i| i as usize);
            let t = self
                .write(&tenant, async |s, held| {
                    s.insert_rule(&tenant, held, index, rule).await
                })
                .await?;
            let at = index.unwrap_or(t.config.dial_plan.len().saturating_sub(1));
            rule_at(&t, at)
        }
        async fn get_dial_plan_rule(&self, r: Request<pb::GetRequest>) -> Reply<pb::DialPlanRule> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            rule_at(&tenant, rule_index(&r.id)?)
        }
        async fn update_dial_plan_rule(
            &self,
            r: Request<pb::UpdateDialPlanRuleRequest>,
        ) -> Reply<pb::DialPlanRule> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            let index = rule_index(&r.id)?;
            let rule = required(&provision::DIAL_PLAN, r.rule)?;
            let t = self
                .write(&tenant, async |s, held| {
                    s.update_rule(&tenant, held, index, rule).await
                })
                .await?;
            rule_at(&t, index)
        }
        async fn delete_dial_plan_rule(&self, r: Request<pb::DeleteRequest>) -> Reply<pb::Deleted> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            let index = rule_index(&r.id)?;
            self.write(&tenant, async |s, held| {
                s.remove_rule(&tenant, held, index).await
            })
            .await?;
            Ok(Response::new(pb::Deleted {}))
        }
        async fn list_dial_plan_rules(
            &self,
            r: Request<pb::ListRequest>,
        ) -> Reply<pb::DialPlanRulePage> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            // Keys that sort as the rules are tried.
            let rules = tenant
                .config
                .dial_plan
                .iter()
                .enumerate()
                .map(|(i, rule)| (format!("{i:010}"), (i, rule)));
            let (rules, next_page_token) = page(rules, &r, |(i, rule)| rule_message(i, rule))?;
            Ok(Response::new(pb::DialPlanRulePage {
                rules,
                next_page_token,
            }))
        }

        async fn create_strategy(
            &self,
            r: Request<pb::CreateStrategyRequest>,
        ) -> Reply<pb::Strategy> {
            let (metadata, _, r) = r.into_parts();
            self.save_strategy(&metadata, &r.tenant, r.strategy, None)
                .await
        }
        async fn get_strategy(&self, r: Request<pb::GetRequest>) -> Reply<pb::Strategy> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            strategy(&tenant, &r.id)
        }
        async fn update_strategy(
            &self,
            r: Request<pb::UpdateStrategyRequest>,
        ) -> Reply<pb::Strategy> {
            let (metadata, _, r) = r.into_parts();
            self.save_strategy(&metadata, &r.tenant, r.strategy, Some(&r.id))
                .await
        }
        async fn delete_strategy(&self, r: Request<pb::DeleteRequest>) -> Reply<pb::Deleted> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.tenant(&metadata, &r.tenant)?;
            match strategy_id(&r.id)? {
                (_, None) => self.delete(&metadata, r, &STRATEGIES).await,
                (name, Some(version)) => {
                    self.write(&tenant, async |s, held| {
                        s.remove_strategy_version(&tenant, held, name, version)
                            .await
                    })
                    .await?;
                    Ok(Response::new(pb::Deleted {}))
                }
            }
        }
        async fn list_strategies(&self, r: Request<pb::ListRequest>) -> Reply<pb::StrategyPage> {
            let (metadata, _, r) = r.into_parts();
            let tenant = self.held(&self.tenant(&metadata, &r.tenant)?)?;
            // By name, then version: a NUL sorts before every character of a name.
            let strategies = tenant
                .config
                .strategies
                .iter()
                .map(|s| (format!("{}\0{:010}", s.name, s.version), s));
            let (strategies, next_page_token) = page(strategies, &r, pb::Strategy::from_config)?;
            Ok(Response::new(pb::StrategyPage {
                strategies,
                next_page_token,
            }))
        }
    }
}

impl Provisioning {
    /// Stores version 1 of a new strategy (`id` is `None`) or the next version of strategy
    /// `id`.
    async fn save_strategy(
        &self,
        metadata: &MetadataMap,
        tenant: &str,
        message: Option<pb::Strategy>,
        id: Option<&str>,
    ) -> Reply<pb::Strategy> {
        let tenant = self.tenant(metadata, tenant)?;
        let mut item = required(&STRATEGIES, message)?;
        if let Some(id) = id {
            if !item.name.is_empty() && item.name != id {
                return Err(Status::invalid_argument(format!(
                    "strategy.name: {:?} is not {id:?}: a strategy keeps its name",
                    item.name
                )));
            }
            item.name = id.to_owned();
        }
        let name = item.name.clone();
        let first = id.is_none();
        let t = self
            .write(&tenant, async |s, held| {
                s.save_strategy(&tenant, held, item, first).await
            })
            .await?;
        strategy(&t, &name)
    }
}

fn rule_at(tenant: &Tenant, index: usize) -> Reply<pb::DialPlanRule> {
    tenant
        .config
        .dial_plan
        .get(index)
        .map(|rule| Response::new(rule_message(index, rule)))
        .ok_or_else(|| Status::not_found(format!("dial plan rule {index} not found")))
}

/// The latest version of a strategy, or `name@version`.
fn strategy(tenant: &Tenant, id: &str) -> Reply<pb::Strategy> {
    let found = match strategy_id(id)? {
        (name, None) => provision::latest_strategy(&tenant.config, name),
        (name, Some(version)) => tenant
            .config
            .strategies
            .iter()
            .find(|s| s.name == name && s.version == version),
    };
    found
        .map(|s| Response::new(pb::Strategy::from_config(s)))
        .ok_or_else(|| Status::not_found(format!("strategy {id:?} not found")))
}

#[cfg(test)]
mod tests {
    //! The service itself, called without a network, with a strategy validator of the test's
    //! own (the routing system supplies the real one): a document it refuses is INVALID_ARGUMENT
    //! naming the field, and nothing is written.

    use super::*;
    use pb::provisioning_server::Provisioning as _;
    use switchboard_actors::tenant::{StrategyConfig, demo_tenant};

    #[tokio::test]
    async fn a_strategy_the_validator_refuses_is_invalid_argument() {
        let Ok(url) = std::env::var("SWITCHBOARD_TEST_POSTGRES") else {
            panic!("SWITCHBOARD_TEST_POSTGRES is not set: run the tests with scripts/test.sh");
        };
        let mut tenant = demo_tenant();
        tenant.name = "validated".into();
        tenant.domain = "validated.example".into();
        tenant.api_keys[0].hash = hash_api_key("validated-key");
        let mut store = ConfigStore::connect(&url).await.expect("postgresql");
        store.import(&tenant).await.expect("imported");
        let stored = store.load("validated").await.expect("load").expect("there");
        let held = stored.checked().expect("valid");
        let directory = Directory::from_tenants([Arc::new(held)]).expect("directory");
        let (_keep, follow) = watch::channel(Arc::new(directory));
        let validator: StrategyValidator = Arc::new(|s: &StrategyConfig| {
            if s.document.contains("goto") {
                Err("goto is not a step".into())
            } else {
                Ok(())
            }
        });
        let service = Provisioning::new(follow, Some(url), None, Some(validator));

        let mut request = Request::new(pb::UpdateStrategyRequest {
            tenant: String::new(),
            id: "support".into(),
            strategy: Some(pb::Strategy {
                document: "label top\nwait 5s\ngoto top\n".into(),
                ..Default::default()
            }),
        });
        request.metadata_mut().insert(
            "authorization",
            "Bearer validated-key".parse().expect("ascii"),
        );
        let refused = service.update_strategy(request).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().starts_with("strategy.document:")
                && refused.message().contains("goto is not a step"),
            "{refused:?}"
        );
        let after = store.load("validated").await.expect("load").expect("there");
        assert_eq!(
            (after.config, after.version),
            (stored.config, stored.version)
        );
    }
}
