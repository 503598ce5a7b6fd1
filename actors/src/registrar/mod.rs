//! The registrar system: bindings of DNs' addresses of record to the contacts of their phones,
//! with digest authentication (RFC 3261 10.3).
//!
//! [`Registrar`] routes each REGISTER to one of its shards by address of record, so that the
//! changes to one address of record happen in order while different ones proceed side by side
//! (each shard awaits its store on its own). A sweeper removes bindings whose time is up and
//! reports each with an event.

pub mod logic;
mod redis;
mod store;

pub use self::redis::RedisStore;
pub use logic::{Binding, Policy};
pub use store::{BindingStore, MemoryStore};

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_proto::events::Payload;
use switchboard_sip::auth::{NonceCounts, NonceKey};
use switchboard_sip::transport::Transport;
use switchboard_sip::{HeaderName, Request, Response};

use crate::Error;
use crate::agent_state::AgentState;
use crate::events::{EventSink, TOPIC_REGISTRAR, new_event};
use crate::shards::Shards;
use crate::tenant::{Directory, Tenant};
use crate::unix_ms;
use logic::{ChangeKind, Register};

/// A REGISTER for the registrar, from the proxy.
#[derive(Debug)]
pub struct RegisterRequest {
    pub tenant: Arc<Tenant>,
    pub request: Request,
    pub source: SocketAddr,
    pub transport: Transport,
}

/// Where the response to a REGISTER goes: called once, by the shard that handled it, so the
/// answer reaches its transaction without a further hop.
pub type Reply = Box<dyn FnOnce(Response) + Send>;

pub enum RegistrarMsg {
    /// The router that reaches the shards directly, for the edge.
    Router(RpcReplyPort<Router>),
    /// A new tenant configuration.
    ConfigChanged(Arc<Directory>),
}

/// How the registrar is set up (its store is passed beside it).
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    pub events: EventSink,
    pub policy: Policy,
    pub nonce_key: NonceKey,
    pub directory: Arc<Directory>,
    /// REGISTERs in progress at once (one per shard).
    pub shards: usize,
    /// How often expired bindings are swept.
    pub sweep_interval: Duration,
    /// Told when a DN's phone registers (its first binding) or goes away (its last).
    pub agents: Option<AgentState>,
}

/// The registrar's front actor.
#[derive(Debug)]
pub struct Registrar<S>(PhantomData<S>);

impl<S> Default for Registrar<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct RegistrarState {
    router: Router,
    sweeper: ActorRef<SweeperMsg>,
}

/// Hands a REGISTER straight to the shard that owns its address of record, without a stop at
/// the front actor: the same phone always lands on the same shard, which holds its nonce
/// counts. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    shards: Shards<ShardMsg>,
}

impl Router {
    /// Fails when the shard has stopped; the reply is then never called.
    pub fn register(&self, register: RegisterRequest, reply: Reply) -> Result<(), Error> {
        // Shard by the To header's text, tags and parameters aside.
        let to = register
            .request
            .headers
            .get(&HeaderName::To)
            .map(|to| to.split(';').next().unwrap_or_default());
        self.shards
            .pick((&register.tenant.name, to))
            .cast(ShardMsg::Register(register, reply))
            .map_err(|_| Error::Stopped("registrar shard"))
    }
}

impl<S: BindingStore> Actor for Registrar<S> {
    type Msg = RegistrarMsg;
    type State = RegistrarState;
    type Arguments = (S, RegistrarConfig);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (store, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut shards = Vec::with_capacity(config.shards.max(1));
        for _ in 0..config.shards.max(1) {
            let (shard, _) = Actor::spawn_linked(
                None,
                Shard::<S>(PhantomData),
                (store.clone(), config.clone()),
                myself.get_cell(),
            )
            .await?;
            shards.push(shard);
        }
        let (sweeper, _) = Actor::spawn_linked(
            None,
            Sweeper::<S>(PhantomData),
            (store, config),
            myself.get_cell(),
        )
        .await?;
        Ok(RegistrarState {
            router: Router {
                shards: Shards::new(shards),
            },
            sweeper,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegistrarMsg::Router(reply) => {
                let _ = reply.send(state.router.clone());
            }
            RegistrarMsg::ConfigChanged(directory) => {
                state.sweeper.cast(SweeperMsg::ConfigChanged(directory))?;
            }
        }
        Ok(())
    }
}

struct Shard<S>(PhantomData<S>);

enum ShardMsg {
    Register(RegisterRequest, Reply),
}

struct ShardState<S> {
    store: S,
    config: RegistrarConfig,
    counts: NonceCounts,
}

impl<S: BindingStore> Actor for Shard<S> {
    type Msg = ShardMsg;
    type State = ShardState<S>;
    type Arguments = (S, RegistrarConfig);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (store, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ShardState {
            store,
            config,
            counts: NonceCounts::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let ShardMsg::Register(register, reply) = message;
        reply(state.register(&register).await);
        Ok(())
    }
}

impl<S: BindingStore> ShardState<S> {
    async fn register(&mut self, r: &RegisterRequest) -> Response {
        let now_ms = unix_ms();
        let tenant = &r.tenant;
        let input = Register {
            request: &r.request,
            source: r.source,
            transport: r.transport,
            now_ms,
        };
        let to_tag = switchboard_sip::token::<6>();
        let fail = |status| Response::to_request(&r.request.headers, status).with_to_tag(&to_tag);
        let dn = match logic::target_dn(tenant, &r.request) {
            Ok(dn) => dn,
            Err(status) => return fail(status),
        };
        if let Err((response, why)) = logic::authenticate(
            tenant,
            &dn,
            input,
            &self.config.nonce_key,
            &mut self.counts,
            &to_tag,
        ) {
            if let Some(why) = why {
                tracing::info!(tenant = %tenant.name, dn = %dn, source = %r.source, reason = ?why,
                    "registration refused: authentication failed");
            }
            return response;
        }
        let aor = tenant.aor(&dn);
        let current = match self.store.load(&tenant.name, &aor).await {
            Ok(current) => current,
            Err(e) => return unavailable(fail, &tenant.name, &aor, &e),
        };
        let plan = match logic::plan(tenant, &dn, input, &current, &self.config.policy, &to_tag) {
            Ok(plan) => plan,
            Err(response) => {
                tracing::debug!(tenant = %tenant.name, aor = %aor, status = response.status,
                    "registration refused");
                return response;
            }
        };
        if let Err(e) = self.store.save(&tenant.name, &aor, &plan.changes).await {
            return unavailable(fail, &tenant.name, &aor, &e);
        }
        if let Some(agents) = &self.config.agents
            && current.is_empty() != plan.after.is_empty()
        {
            agents.registration(&tenant.name, &dn, !plan.after.is_empty());
        }
        for (kind, binding) in &plan.events {
            publish(&self.config.events, &tenant.name, *kind, binding, now_ms).await;
        }
        logic::ok_response(&r.request, &plan.after, now_ms, &to_tag)
    }
}

/// The store failed: the phone should try again shortly (RFC 3261 21.5.4).
fn unavailable(
    fail: impl Fn(u16) -> Response,
    tenant: &str,
    aor: &str,
    error: &crate::Error,
) -> Response {
    tracing::warn!(tenant, aor, error = %error, "binding store unavailable");
    fail(503).with_header(HeaderName::RetryAfter, "5")
}

async fn publish(
    events: &EventSink,
    tenant: &str,
    kind: ChangeKind,
    binding: &Binding,
    now_ms: u64,
) {
    let event = new_event(
        tenant,
        TOPIC_REGISTRAR,
        format!("{tenant}:{}", binding.aor),
        kind.event_kind(),
        Payload::Binding(binding.to_event(now_ms, kind.reason())),
        now_ms,
    );
    match events.publish(event).await {
        Ok(e) => {
            tracing::debug!(tenant, aor = %binding.aor, kind = %e.kind, seq = e.seq, "binding event")
        }
        Err(err) => {
            tracing::warn!(tenant, aor = %binding.aor, error = %err, "binding event not stored");
        }
    }
}

/// Removes expired bindings and reports them.
struct Sweeper<S>(PhantomData<S>);

impl<S: BindingStore> SweeperState<S> {
    /// Tells agent state of the DNs whose last binding just expired.
    async fn gone(&self, tenant: &str, expired: &[Binding]) {
        let Some(agents) = &self.config.agents else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for b in expired {
            if !seen.insert(&b.aor) {
                continue;
            }
            match self.store.load(tenant, &b.aor).await {
                Ok(left) if left.is_empty() => agents.registration(tenant, &b.dn, false),
                Ok(_) => {}
                Err(e) => tracing::warn!(tenant, aor = %b.aor, error = %e,
                    "cannot tell whether a DN has bindings left"),
            }
        }
    }
}

enum SweeperMsg {
    Sweep,
    ConfigChanged(Arc<Directory>),
}

struct SweeperState<S> {
    store: S,
    config: RegistrarConfig,
}

/// Bindings taken per tenant per sweep; more wait for the next sweep.
const SWEEP_BATCH: usize = 1000;

impl<S: BindingStore> Actor for Sweeper<S> {
    type Msg = SweeperMsg;
    type State = SweeperState<S>;
    type Arguments = (S, RegistrarConfig);

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (store, config): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(config.sweep_interval, || SweeperMsg::Sweep);
        Ok(SweeperState { store, config })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SweeperMsg::ConfigChanged(directory) => state.config.directory = directory,
            SweeperMsg::Sweep => {
                let now_ms = unix_ms();
                for tenant in state.config.directory.tenants() {
                    match state
                        .store
                        .take_expired(&tenant.name, now_ms, SWEEP_BATCH)
                        .await
                    {
                        Ok(expired) => {
                            state.gone(&tenant.name, &expired).await;
                            for b in &expired {
                                tracing::info!(tenant = %tenant.name, aor = %b.aor,
                                    contact = %b.contact, "binding expired");
                                publish(
                                    &state.config.events,
                                    &tenant.name,
                                    ChangeKind::Expired,
                                    b,
                                    now_ms,
                                )
                                .await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(tenant = %tenant.name, error = %e, "expiry sweep failed");
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
