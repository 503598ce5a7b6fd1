//! The registrar system: bindings of DNs' addresses of record to the contacts of their phones,
//! with digest authentication (RFC 3261 10.3).
//!
//! [`Registrar`] routes each REGISTER to one of its shards by address of record, so that the
//! changes to one address of record happen in order while different ones proceed side by side
//! (each shard awaits its store on its own). A sweeper removes bindings whose time is up and
//! reports each with an event. The bindings live in a [`BindingStore`]: [`MemoryBindings`],
//! or [`RedisBindings`] so that they survive a restart and every node sees them.

pub mod logic;
mod redis;
mod store;

pub use self::redis::RedisBindings;
pub use logic::Policy;
pub use store::MemoryBindings;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_proto::events::Payload;
use switchboard_sip::auth::{NonceCounts, NonceKey};
use switchboard_sip::{HeaderName, Response};

use crate::events::{EventSink, TOPIC_REGISTRAR, new_event};
use crate::messages::agent_state::AgentState;
use crate::messages::registrar::{Binding, BindingStore, RegisterJob, RegisterRequest, Router};
use crate::shards::{Shards, set_name};
use crate::tenant::Directory;
use crate::unix_ms;
use logic::{ChangeKind, Register};

pub enum RegistrarMsg {
    /// The router that reaches the shards directly, for the edge.
    Router(RpcReplyPort<Router>),
    /// A new tenant configuration.
    ConfigChanged(Arc<Directory>),
}

/// How the registrar is set up.
#[derive(Clone)]
pub struct RegistrarConfig {
    pub store: Arc<dyn BindingStore>,
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
    /// Where registrations are counted per tenant, for the metrics.
    pub figures: Arc<crate::figures::Figures>,
}

/// The registrar's front actor.
#[derive(Debug)]
pub struct Registrar;

pub struct RegistrarState {
    router: Router,
    sweeper: ActorRef<SweeperMsg>,
}

impl Actor for Registrar {
    type Msg = RegistrarMsg;
    type State = RegistrarState;
    type Arguments = RegistrarConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        config: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let set = set_name("registrar");
        let mut shards = Vec::with_capacity(config.shards.max(1));
        for i in 0..config.shards.max(1) {
            let name = Shards::<RegisterJob>::name(&set, i);
            let (shard, _) =
                Actor::spawn_linked(Some(name.clone()), Shard, config.clone(), myself.get_cell())
                    .await?;
            shards.push((name, shard));
        }
        let (sweeper, _) = Actor::spawn_linked(None, Sweeper, config, myself.get_cell()).await?;
        Ok(RegistrarState {
            router: Router::new(Shards::new(shards)),
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

struct Shard;

struct ShardState {
    config: RegistrarConfig,
    counts: NonceCounts,
}

impl Actor for Shard {
    type Msg = RegisterJob;
    type State = ShardState;
    type Arguments = RegistrarConfig;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        config: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ShardState {
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
        // Borrowed in place rather than moved out: a copy would sit in the future beside it.
        let response = state.register(&message.0).await;
        (message.1)(response);
        Ok(())
    }
}

impl ShardState {
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
                // Told, summarised, where the source's failures are counted (the defence).
                tracing::debug!(tenant = %tenant.name, dn = %dn, source = %r.source, reason = ?why,
                    "registration refused: authentication failed");
                self.config.figures.registration(&tenant.name, false);
            }
            return response;
        }
        let aor = tenant.aor(&dn);
        let current = match self.config.store.load(&tenant.name, &aor).await {
            Ok(current) => current,
            Err(e) => return unavailable(fail, &tenant.name, &aor, &e),
        };
        let had_bindings = !current.is_empty();
        let plan = match logic::plan(tenant, &dn, input, current, &self.config.policy, &to_tag) {
            Ok(plan) => plan,
            Err(response) => {
                tracing::debug!(tenant = %tenant.name, aor = %aor, status = response.status,
                    "registration refused");
                return response;
            }
        };
        if let Err(e) = self
            .config
            .store
            .save(&tenant.name, &aor, plan.changes)
            .await
        {
            return unavailable(fail, &tenant.name, &aor, &e);
        }
        if let Some(agents) = &self.config.agents
            && had_bindings == plan.after.is_empty()
        {
            agents.registration(&tenant.name, &dn, !plan.after.is_empty());
        }
        // The answer first, so that an event's binding the store does not keep (Redis) is
        // moved into it rather than copied.
        let ok = logic::ok_response(&r.request, &plan.after, now_ms, &to_tag);
        drop(plan.after);
        for (kind, binding) in plan.events {
            publish(&self.config.events, &tenant.name, kind, binding, now_ms).await;
        }
        self.config.figures.registration(&tenant.name, true);
        ok
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

/// Publishes the event of a binding's change and logs how that went. The event is made
/// before the future, which holds only its address of record and the write (see
/// [`EventSink::publish`]).
fn publish<'a>(
    events: &'a EventSink,
    tenant: &'a str,
    kind: ChangeKind,
    binding: Arc<Binding>,
    now_ms: u64,
) -> impl Future<Output = ()> + Send + 'a {
    let aor = binding.aor.clone();
    let publishing = events.publish(new_event(
        tenant,
        TOPIC_REGISTRAR,
        [tenant, ":", &aor].concat(),
        kind.event_kind(),
        // A copy only of a binding the store keeps; one it let go of is moved.
        Payload::Binding(Arc::unwrap_or_clone(binding).into_event(now_ms, kind.reason())),
        now_ms,
    ));
    async move {
        match publishing.await {
            Ok(e) => {
                tracing::debug!(
                    tenant,
                    aor,
                    kind = kind.event_kind(),
                    seq = e,
                    "binding event"
                )
            }
            Err(err) => {
                tracing::warn!(tenant, aor, error = %err, "binding event not stored");
            }
        }
    }
}

/// Removes expired bindings and reports them.
struct Sweeper;

impl SweeperState {
    /// Tells agent state of the DNs whose last binding just expired.
    async fn gone(&self, tenant: &str, expired: &[Arc<Binding>]) {
        let Some(agents) = &self.config.agents else {
            return;
        };
        let mut seen = std::collections::HashSet::new();
        for b in expired {
            if !seen.insert(&b.aor) {
                continue;
            }
            match self.config.store.load(tenant, &b.aor).await {
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

struct SweeperState {
    config: RegistrarConfig,
}

/// Bindings taken per tenant per sweep; more wait for the next sweep.
const SWEEP_BATCH: usize = 1000;

impl Actor for Sweeper {
    type Msg = SweeperMsg;
    type State = SweeperState;
    type Arguments = RegistrarConfig;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        config: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(config.sweep_interval, || SweeperMsg::Sweep);
        Ok(SweeperState { config })
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
                        .config
                        .store
                        .take_expired(&tenant.name, now_ms, SWEEP_BATCH)
                        .await
                    {
                        Ok(expired) => {
                            state.gone(&tenant.name, &expired).await;
                            for b in expired {
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
