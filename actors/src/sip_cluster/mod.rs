//! The SIP cluster system (Voice SIP Cluster): every call is one actor, a back-to-back user
//! agent that owns the call's legs, their dialogs and transactions (design.md "A call through
//! the core"), and the cluster actor is their door: it owns the node's table of calls, starts
//! and supervises the call actors, and takes what desktops and callbacks ask of calls.
//!
//! [`call::Call`] is the call as a sans-io state machine; [`actor`] drives one. The edge hands
//! a dialog-creating request to the cluster, which starts its call and answers with where the
//! call's later messages go: the edge hands those to the call itself, without a stop here (the
//! cluster tells it of the calls it places and of the calls that end, [`CallRoute`]).

mod actor;
pub mod call;
mod calls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, SupervisionEvent};
use switchboard_sip::transaction::TimerConfig;

use crate::messages::call_state::CallThreads;
use crate::messages::ors::Ors;
use crate::messages::registrar::BindingStore;
use crate::messages::sip_cluster::{
    CallRef, CallView, Cluster, ClusterMsg, ControlError, Invalid, MainCall, Refusal, Started,
};
use crate::messages::sip_proxy::CallRoute;
use crate::supervisor::Supervisor;
use crate::tenant::Directory;
use crate::wakeups::Wakeups;
use actor::{CallActor, CallMsg, Shared, Start};
use calls::Calls;

/// How calls behave, for every call of the node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub timers: TimerConfig,
    /// How long an extension rings before the caller gets 480, unless its DN says otherwise
    /// (option `no-answer-timeout`, seconds).
    pub no_answer: Duration,
    /// How often each leg of an established call is probed with an in-dialog OPTIONS, so a
    /// phone that vanished does not hold a call for ever; zero turns probing off.
    pub probe_interval: Duration,
    /// The session interval offered (RFC 4028): a leg whose refresher lets it pass without a
    /// refresh ends the call.
    pub session_expires: Duration,
    /// The shortest session interval accepted (Min-SE; shorter gets 422).
    pub min_se: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            no_answer: Duration::from_secs(30),
            probe_interval: Duration::from_secs(60),
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

/// Calls in progress per DN, for the DNs' `max-calls` caps; shared by the node's calls.
#[derive(Debug, Clone, Default)]
pub struct DnCalls(Arc<Mutex<HashMap<(String, String), u32>>>);

impl DnCalls {
    /// Takes a place for one more call to `dn`; false when it holds `max` already.
    pub fn acquire(&self, tenant: &str, dn: &str, max: Option<u32>) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry((tenant.to_owned(), dn.to_owned())).or_default();
        if max.is_some_and(|max| *n >= max) {
            return false;
        }
        *n += 1;
        true
    }

    pub fn release(&self, tenant: &str, dn: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant.to_owned(), dn.to_owned());
        if let Some(n) = map.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&key);
            }
        }
    }

    /// Calls in progress to `dn`.
    pub fn count(&self, tenant: &str, dn: &str) -> u32 {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(tenant.to_owned(), dn.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// What the cluster is started with.
pub struct ClusterArgs {
    pub config: ClusterConfig,
    /// Where calls find the phones of a DN.
    pub bindings: Arc<dyn BindingStore>,
    pub call_threads: CallThreads,
    /// Runs the strategies of routing points; without it, their calls take the default
    /// destination.
    pub ors: Option<Ors>,
    /// The prefix of the Call-IDs this node makes (see
    /// [`crate::messages::sip_cluster::call_id`]), which the edge shares.
    pub node: Arc<str>,
    pub directory: Arc<Directory>,
}

impl Cluster {
    /// Starts the cluster under the root supervisor; its failure stops the node (the table of
    /// calls is its alone). It takes calls once the edge has told it where it is.
    pub async fn spawn(
        args: ClusterArgs,
        supervisor: &Supervisor,
    ) -> Result<Self, ractor::SpawnErr> {
        Ok(Self::new(
            supervisor.spawn("sip_cluster", ClusterActor, args).await?,
        ))
    }
}

struct ClusterActor;

struct ClusterState {
    args: ClusterArgs,
    calls: Calls,
    /// What its calls share, once the edge is known.
    shared: Option<Arc<Shared>>,
    /// Where the edge hears which call takes which messages.
    routes: Option<DerivedActorRef<CallRoute>>,
}

impl Actor for ClusterActor {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Arguments = ClusterArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ClusterState {
            calls: Calls::new(args.node.clone()),
            args,
            shared: None,
            routes: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ClusterMsg::Edge { endpoint, routes } => {
                state.shared = Some(Arc::new(Shared {
                    endpoint,
                    config: Arc::new(state.args.config.clone()),
                    bindings: state.args.bindings.clone(),
                    call_threads: state.args.call_threads.clone(),
                    dn_calls: DnCalls::default(),
                    node: state.args.node.clone(),
                    wakeups: Wakeups::start(|| CallMsg::Wake),
                    cluster: Cluster::new(myself.clone()),
                    ors: state.args.ors.clone(),
                }));
                state.routes = Some(routes);
            }
            ClusterMsg::ConfigChanged(directory) => state.args.directory = directory,
            ClusterMsg::NewDialog { new, reply } => {
                let started = state.start(Start::Incoming(new), &myself).await;
                let _ = reply.send(started.map(|(key, call, _)| Started {
                    key,
                    call: call.get_derived(),
                }));
            }
            ClusterMsg::MakeCall {
                tenant,
                dn,
                dial,
                user_data,
                thread,
                reply,
            } => {
                let Some(t) = state.args.directory.by_name(&tenant).cloned() else {
                    let _ = reply.send(Err(ControlError::NotFound(tenant)));
                    return Ok(());
                };
                if t.dial_plan.route(&dial).is_none() {
                    let no_route = Invalid::NoRoute {
                        tenant,
                        dialed: dial,
                    };
                    let _ = reply.send(Err(no_route.into()));
                    return Ok(());
                }
                let start = Start::Originate {
                    tenant: t,
                    dn,
                    dial,
                    user_data,
                    thread,
                };
                match state.start(start, &myself).await {
                    Ok((key, call, id)) => {
                        // The edge learns where the call's messages go before the call says
                        // anything: it speaks once woken.
                        if let Some(routes) = &state.routes {
                            let placed = CallRoute::Placed {
                                key,
                                call: call.get_derived(),
                            };
                            let _ = routes.send_message(placed);
                        }
                        let _ = call.cast(CallMsg::Wake);
                        let _ = reply.send(Ok(id));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            ClusterMsg::Control {
                tenant,
                call,
                dn,
                control,
                reply,
            } => match state.calls.by_id(&call) {
                Some((_, actor)) => {
                    let _ = actor.cast(CallMsg::Control {
                        tenant,
                        dn,
                        control,
                        reply,
                    });
                }
                None => {
                    let _ = reply.send(Err(ControlError::NotFound(call)));
                }
            },
            ClusterMsg::Complete {
                main,
                consult,
                conference,
                reply,
            } => state.complete(main, consult, conference, reply),
            ClusterMsg::Count(reply) => {
                let _ = reply.send(state.calls.len());
            }
        }
        Ok(())
    }

    /// A call actor stopped, at the end of its call or by failing: its call is forgotten,
    /// and the edge told.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => cell,
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(actor = %cell.get_id(), error = %error, "call actor failed");
                cell
            }
            _ => return Ok(()),
        };
        if let Some(key) = state.calls.ended(cell.get_id())
            && let Some(routes) = &state.routes
        {
            let _ = routes.send_message(CallRoute::Ended { key });
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        for call in state.calls.actors() {
            call.stop(None);
        }
        Ok(())
    }
}

impl ClusterState {
    /// Starts a call's actor under the cluster: its number, actor and id.
    async fn start(
        &mut self,
        start: Start,
        myself: &ActorRef<ClusterMsg>,
    ) -> Result<(u64, ActorRef<CallMsg>, String), ControlError> {
        let Some(shared) = self.shared.clone() else {
            return Err(Refusal::NotStarted("the node's SIP edge is not up yet".into()).into());
        };
        let key = self.calls.next_key();
        // Copied: a slice would keep the INVITE's datagram alive with the call. A call the
        // core places has only Call-IDs of its own, found by their key.
        let call_id = match &start {
            Start::Incoming(new) => ByteString::from(
                new.request
                    .headers
                    .call_id()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            Start::Originate { .. } => ByteString::new(),
        };
        let id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        let spawned = Actor::spawn_linked(
            None,
            CallActor,
            (key, id.clone(), start, shared),
            myself.get_cell(),
        )
        .await;
        let (actor, _) = spawned.map_err(|e| {
            tracing::error!(error = %e, "call actor not started");
            ControlError::from(Refusal::NotStarted(e.to_string()))
        })?;
        self.calls.insert(key, id.clone(), call_id, actor.clone());
        Ok((key, actor, id.to_string()))
    }

    /// Completes a transfer or conference (see [`ClusterMsg::Complete`]): the consultation
    /// call gives up its party's leg, the edge hands that leg's messages to the main call,
    /// which takes it, and the consultation call ends. The steps run in a task of their own,
    /// each a request to a call actor, so that the cluster goes on meanwhile.
    fn complete(
        &self,
        main: MainCall,
        consult: CallRef,
        conference: bool,
        reply: Option<ractor::RpcReplyPort<Result<CallView, ControlError>>>,
    ) {
        let not_found = |name: String| ControlError::NotFound(name);
        let found = match (self.calls.by_id(&main.call), self.calls.lookup(&consult)) {
            (None, _) => Err(not_found(main.call.clone())),
            (_, None) => {
                let (CallRef::Id(name) | CallRef::SipCallId(name)) = consult;
                Err(not_found(name))
            }
            (Some((key, main_call)), Some((_, consult_call))) => {
                Ok((key, main_call.clone(), consult_call.clone()))
            }
        };
        let (key, main_call, consult_call) = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(tenant = %main.tenant, call_id = %main.call, error = %e,
                    "transfer not completed");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e));
                }
                return;
            }
        };
        let routes = self.routes.clone();
        tokio::spawn(async move {
            let completed = steps(
                main.clone(),
                key,
                main_call,
                consult_call,
                routes,
                conference,
            )
            .await;
            if let Err(e) = &completed {
                tracing::warn!(tenant = %main.tenant, call_id = %main.call, error = %e,
                    "transfer not completed");
            }
            if let Some(reply) = reply {
                let _ = reply.send(completed);
            }
        });
    }
}

/// The steps of completing a transfer into call `key` (see [`ClusterState::complete`]).
async fn steps(
    main: MainCall,
    key: u64,
    main_call: ActorRef<CallMsg>,
    consult_call: ActorRef<CallMsg>,
    routes: Option<DerivedActorRef<CallRoute>>,
    conference: bool,
) -> Result<CallView, ControlError> {
    let unavailable = |e: ractor::RactorErr<CallMsg>| ControlError::Unavailable(e.to_string());
    let handover = ractor::call!(consult_call, |reply| CallMsg::HandOver {
        tenant: main.tenant.clone(),
        dn: main.dn.clone(),
        reply,
    })
    .map_err(unavailable)??;
    if let Some(routes) = &routes {
        let moved = CallRoute::Moved {
            call_id: handover.call_id().clone(),
            key,
        };
        let _ = routes.send_message(moved);
    }
    let view = ractor::call!(main_call, |reply| CallMsg::TakeOver {
        tenant: main.tenant.clone(),
        dn: main.dn.clone(),
        handover,
        conference,
        reply,
    })
    .map_err(unavailable)??;
    ractor::call!(consult_call, |reply| CallMsg::Finish {
        tenant: main.tenant.clone(),
        dn: main.dn.clone(),
        conferenced: conference,
        thread: main.thread.clone(),
        reply,
    })
    .map_err(unavailable)??;
    Ok(view)
}
