//! The voice API for agent desktops, `switchboard.voice.v1` (see `proto/voice.proto`): agent
//! operations carried out by the agent-state system, and the event stream a desktop follows.
//!
//! A refused operation answers with its gRPC status and is also written, as an `EventError`,
//! to the tenant's `desktop-errors` stream, which the event stream merges: a desktop that
//! only watches its stream still learns of it.

use std::collections::HashSet;
use std::sync::Arc;

use switchboard_actors::events::{EventSink, TOPIC_AGENTSTATE, TOPIC_ERRORS, new_event};
use switchboard_actors::feed::{self, Cursor, FeedError};
use switchboard_actors::messages::agent_state::{AgentState, Command, CommandError, WorkMode};
use switchboard_actors::messages::rq::Rq;
use switchboard_actors::messages::sip_cluster::{
    CallRef, CallState, CallView, Cluster, ClusterMsg, Control, ControlError, MainCall, Operation,
    RecordAction, Refusal,
};
use switchboard_actors::tenant::{AgentConfig, Directory, Tenant};
use switchboard_proto::events::{Event, Payload, RequestError};
use switchboard_proto::voice as pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::auth::Keys;

mod monitor;

pub(crate) use pb::agents_server::AgentsServer;
pub(crate) use pb::calls_server::CallsServer;
pub(crate) use pb::events_server::EventsServer;
pub(crate) use pb::queues_server::QueuesServer;

/// How many events may wait for a slow desktop before its stream stops taking more (the
/// feed then waits; the desktop catches up from the streams).
const STREAM_BUFFER: usize = 256;

#[derive(Clone)]
pub(crate) struct Voice {
    keys: Keys,
    directory: watch::Receiver<Arc<Directory>>,
    agents: AgentState,
    events: EventSink,
    /// The node's calls.
    calls: Cluster,
    /// The virtual queues, for their figures.
    rq: Rq,
}

type Reply<T> = Result<Response<T>, Status>;

impl Voice {
    pub(crate) fn new(
        keys: Keys,
        directory: watch::Receiver<Arc<Directory>>,
        agents: AgentState,
        events: EventSink,
        calls: Cluster,
        rq: Rq,
    ) -> Self {
        Self {
            keys,
            directory,
            agents,
            events,
            calls,
            rq,
        }
    }

    /// The tenant a request may reach, as this node holds it.
    fn tenant(&self, request: &Request<impl Sized>, named: &str) -> Result<Arc<Tenant>, Status> {
        let name = self.keys.tenant(request.metadata(), named)?;
        self.directory
            .borrow()
            .by_name(&name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("tenant {name:?} not found")))
    }

    /// Carries out an agent's command; a refusal is answered and reported on the stream.
    async fn command(
        &self,
        tenant: &Tenant,
        operation: &str,
        agent: &str,
        reference_id: String,
        command: Command,
    ) -> Reply<pb::Ack> {
        let outcome = self.agents.command(&tenant.name, agent, command).await;
        let outcome = outcome.map(|()| String::new()).map_err(|e| status(&e));
        self.acknowledge(tenant, operation, agent, "", reference_id, outcome)
            .await
    }

    /// The DN the agent is logged in on.
    async fn agent_dn(&self, tenant: &Tenant, agent: &str) -> Result<String, Status> {
        let s = self
            .agents
            .status(&tenant.name, agent)
            .await
            .map_err(|e| status(&e))?;
        if s.state.dn.is_empty() {
            return Err(Status::failed_precondition(format!(
                "agent {agent} is not logged in"
            )));
        }
        Ok(s.state.dn)
    }

    /// Asks call `call` to carry out `control` for `agent`.
    async fn control(
        &self,
        tenant: &Tenant,
        agent: &str,
        call: &str,
        control: Control,
    ) -> Result<CallView, Status> {
        let dn = self.agent_dn(tenant, agent).await?;
        self.calls
            .control(&tenant.name, call, &dn, control)
            .await
            .map_err(|e| control_status(e, call, agent))
    }

    /// Starts a call from the agent's phone to `dial` (in the thread of call `thread`); its id.
    async fn originate(
        &self,
        tenant: &Tenant,
        agent: &str,
        dial: &str,
        user_data: std::collections::BTreeMap<String, String>,
        thread: Option<String>,
    ) -> Result<String, Status> {
        if dial.is_empty() {
            return Err(Status::invalid_argument("destination: required"));
        }
        let dn = self.agent_dn(tenant, agent).await?;
        let asked = self.calls.ask(|reply| ClusterMsg::MakeCall {
            tenant: tenant.name.clone(),
            dn,
            dial: dial.to_owned(),
            user_data,
            thread,
            reply,
        });
        asked.await.map_err(|e| control_status(e, "", agent))
    }

    /// Connects the party of consultation call `consult` to call `call` in place of the agent
    /// (or with the agent, in a conference).
    async fn complete_transfer(
        &self,
        tenant: &Tenant,
        agent: &str,
        call: &str,
        consult: &str,
        conference: bool,
    ) -> Result<CallView, Status> {
        let dn = self.agent_dn(tenant, agent).await?;
        // The main call must be able to take the party before the party leaves its call.
        let main = self.transferable(tenant, agent, call).await?;
        let main = MainCall {
            tenant: tenant.name.clone(),
            call: call.to_owned(),
            thread: main.call.thread_id,
            dn,
        };
        let consult = CallRef::Id(consult.to_owned());
        self.calls
            .complete(main, consult, conference)
            .await
            .map_err(|e| control_status(e, call, agent))
    }

    /// Call `call` as the agent sees it, if it is answered (established or held): one that
    /// can be transferred or conferenced.
    async fn transferable(
        &self,
        tenant: &Tenant,
        agent: &str,
        call: &str,
    ) -> Result<CallView, Status> {
        let view = self.control(tenant, agent, call, Control::View).await?;
        if !view.state.answered() {
            let refusal = Refusal::State(Operation::Transfer, view.state);
            return Err(control_status(refusal.into(), call, agent));
        }
        Ok(view)
    }

    /// CompleteTransfer, or CompleteConference with `conference`.
    async fn completion(
        &self,
        request: Request<pb::ConsultRequest>,
        operation: &str,
        conference: bool,
    ) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let completed = if r.consult_call_id.is_empty() {
            Err(Status::failed_precondition(
                "no consultation call to complete with (consult_call_id)",
            ))
        } else {
            let (agent, call, consult) = (&r.agent_id, &r.call_id, &r.consult_call_id);
            self.complete_transfer(&tenant, agent, call, consult, conference)
                .await
                .map(|view| view.call.call_id)
        };
        self.acknowledge(
            &tenant,
            operation,
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            completed,
        )
        .await
    }

    /// A consultation request: `steps` carried out in order, acknowledged with the call.
    async fn consultation(
        &self,
        tenant: &Tenant,
        operation: &str,
        r: pb::ConsultRequest,
        steps: Vec<(bool, Control)>,
    ) -> Reply<pb::Ack> {
        let mut outcome = Ok(r.call_id.clone());
        for (on_consult, control) in steps {
            let call = if on_consult {
                &r.consult_call_id
            } else {
                &r.call_id
            };
            if let Err(status) = self.control(tenant, &r.agent_id, call, control).await {
                outcome = Err(status);
                break;
            }
        }
        self.acknowledge(
            tenant,
            operation,
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            outcome,
        )
        .await
    }

    /// An agent request that is its command and nothing more.
    async fn agent_request(
        &self,
        request: Request<pb::AgentRequest>,
        operation: &str,
        command: Command,
    ) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.command(&tenant, operation, &r.agent_id, r.reference_id, command)
            .await
    }

    /// A call request that is its control and nothing more.
    async fn call_request(
        &self,
        request: Request<pb::CallRequest>,
        operation: &str,
        control: Control,
    ) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.call_operation(
            &tenant,
            operation,
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            control,
        )
        .await
    }

    /// A call operation: acknowledged, or refused and reported on the stream.
    async fn call_operation(
        &self,
        tenant: &Tenant,
        operation: &str,
        agent: &str,
        call: &str,
        reference_id: String,
        control: Control,
    ) -> Reply<pb::Ack> {
        let outcome = self.control(tenant, agent, call, control).await;
        let outcome = outcome.map(|view| view.call.call_id);
        self.acknowledge(tenant, operation, agent, call, reference_id, outcome)
            .await
    }

    /// The answer to a request: its acknowledgement (with the call it concerns or created),
    /// or its refusal, also written as an `EventError` to the tenant's errors stream so that
    /// a desktop watching only its event stream learns of it.
    async fn acknowledge(
        &self,
        tenant: &Tenant,
        operation: &str,
        agent: &str,
        call: &str,
        reference_id: String,
        outcome: Result<String, Status>,
    ) -> Reply<pb::Ack> {
        match outcome {
            Ok(call_id) => Ok(Response::new(pb::Ack {
                reference_id,
                call_id,
            })),
            Err(status) => {
                self.report(tenant, operation, agent, call, reference_id, &status)
                    .await;
                Err(status)
            }
        }
    }

    async fn report(
        &self,
        tenant: &Tenant,
        operation: &str,
        agent: &str,
        call: &str,
        reference_id: String,
        status: &Status,
    ) {
        tracing::info!(tenant = %tenant.name, agent, call, operation, code = ?status.code(),
            reason = status.message(), "desktop request refused");
        let error = RequestError {
            operation: operation.to_owned(),
            reference_id,
            agent_id: agent.to_owned(),
            call_id: call.to_owned(),
            code: code_name(status.code()).to_owned(),
            message: status.message().to_owned(),
        };
        let event = new_event(
            &tenant.name,
            TOPIC_ERRORS,
            format!("{}:{agent}", tenant.name),
            "EventError",
            Payload::Error(error),
            switchboard_actors::unix_ms(),
        );
        if let Err(e) = self.events.publish(event).await {
            tracing::warn!(tenant = %tenant.name, error = %e, "EventError not stored");
        }
    }
}

fn status(e: &CommandError) -> Status {
    let message = e.to_string();
    match e {
        CommandError::UnknownAgent { .. } => Status::not_found(message),
        CommandError::UnknownTenant(_) | CommandError::NotAnExtension { .. } => {
            Status::invalid_argument(message)
        }
        CommandError::Refused(_) | CommandError::DnTaken { .. } => {
            Status::failed_precondition(message)
        }
        CommandError::Unavailable(_) => Status::unavailable(message),
    }
}

/// The name gRPC gives a status code (FAILED_PRECONDITION, ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::NotFound => "NOT_FOUND",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::Unavailable => "UNAVAILABLE",
        Code::OutOfRange => "OUT_OF_RANGE",
        _ => "UNKNOWN",
    }
}

fn work_mode(mode: pb::WorkMode) -> WorkMode {
    match mode {
        pb::WorkMode::Unknown => WorkMode::Unknown,
        pb::WorkMode::AuxWork => WorkMode::AuxWork,
        pb::WorkMode::AfterCallWork => WorkMode::AfterCallWork,
        pb::WorkMode::WalkAway => WorkMode::WalkAway,
    }
}

/// The agent a login names, by id or else by login code.
fn login_agent<'a>(tenant: &'a Tenant, r: &pb::LoginRequest) -> Result<&'a AgentConfig, Status> {
    let agents = &tenant.config.agents;
    let found = if !r.agent_id.is_empty() {
        agents.iter().find(|a| a.id == r.agent_id)
    } else if !r.login_code.is_empty() {
        agents.iter().find(|a| a.login_code == r.login_code)
    } else {
        return Err(Status::invalid_argument(
            "agent_id or login_code: one is required",
        ));
    };
    let agent = found.ok_or_else(|| {
        Status::not_found(format!(
            "no agent {:?} in tenant {}",
            if r.agent_id.is_empty() {
                &r.login_code
            } else {
                &r.agent_id
            },
            tenant.name
        ))
    })?;
    if !r.login_code.is_empty() && agent.login_code != r.login_code {
        return Err(Status::invalid_argument(format!(
            "login code does not belong to agent {}",
            agent.id
        )));
    }
    Ok(agent)
}

/// The DN a login is for: the one named, else the first of the place named, else of the
/// agent's own place.
fn login_dn(tenant: &Tenant, agent: &AgentConfig, r: &pb::LoginRequest) -> Result<String, Status> {
    if !r.dn.is_empty() {
        return Ok(r.dn.clone());
    }
    let place = if r.place.is_empty() {
        agent.place.as_deref().ok_or_else(|| {
            Status::invalid_argument(format!(
                "dn or place: agent {} has no place of its own",
                agent.id
            ))
        })?
    } else {
        r.place.as_str()
    };
    tenant
        .config
        .places
        .iter()
        .find(|p| p.name == place)
        .and_then(|p| p.dns.first().cloned())
        .ok_or_else(|| Status::invalid_argument(format!("place {place:?} has no DN")))
}

/// The queues a login serves: those named, each a group of the tenant, else the agent's own.
fn login_queues(
    tenant: &Tenant,
    agent: &AgentConfig,
    r: &pb::LoginRequest,
) -> Result<Vec<String>, Status> {
    if r.queues.is_empty() {
        return Ok(agent.groups.clone());
    }
    for q in &r.queues {
        if !tenant.config.agent_groups.iter().any(|g| g.name == *q) {
            return Err(Status::invalid_argument(format!(
                "queue {q:?} is not an agent group of tenant {}",
                tenant.name
            )));
        }
    }
    Ok(r.queues.clone())
}

#[tonic::async_trait]
impl pb::agents_server::Agents for Voice {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let named = if r.agent_id.is_empty() {
            &r.login_code
        } else {
            &r.agent_id
        };
        let agent = match login_agent(&tenant, &r) {
            Ok(agent) => agent,
            Err(status) => {
                return self
                    .acknowledge(
                        &tenant,
                        "Login",
                        named,
                        "",
                        r.reference_id.clone(),
                        Err(status),
                    )
                    .await;
            }
        };
        let resolved =
            login_dn(&tenant, agent, &r).and_then(|dn| Ok((dn, login_queues(&tenant, agent, &r)?)));
        let (dn, queues) = match resolved {
            Ok(found) => found,
            Err(status) => {
                return self
                    .acknowledge(
                        &tenant,
                        "Login",
                        &agent.id,
                        "",
                        r.reference_id.clone(),
                        Err(status),
                    )
                    .await;
            }
        };
        self.command(
            &tenant,
            "Login",
            &agent.id,
            r.reference_id,
            Command::Login { dn, queues },
        )
        .await
    }

    async fn logout(&self, request: Request<pb::AgentRequest>) -> Reply<pb::Ack> {
        self.agent_request(request, "Logout", Command::Logout).await
    }

    async fn ready(&self, request: Request<pb::AgentRequest>) -> Reply<pb::Ack> {
        self.agent_request(request, "Ready", Command::Ready).await
    }

    async fn not_ready(&self, request: Request<pb::NotReadyRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let command = Command::NotReady {
            reason: (!r.reason.is_empty()).then(|| r.reason.clone()),
            work_mode: work_mode(r.work_mode()),
        };
        self.command(&tenant, "NotReady", &r.agent_id, r.reference_id, command)
            .await
    }

    async fn after_call_work(&self, request: Request<pb::AgentRequest>) -> Reply<pb::Ack> {
        self.agent_request(request, "AfterCallWork", Command::AfterCallWork)
            .await
    }

    async fn set_dnd(&self, request: Request<pb::DndRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.command(
            &tenant,
            "SetDnd",
            &r.agent_id,
            r.reference_id,
            Command::Dnd(r.on),
        )
        .await
    }

    async fn get_agent(&self, request: Request<pb::AgentRequest>) -> Reply<pb::AgentStatus> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let s = self
            .agents
            .status(&tenant.name, &r.agent_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AgentStatus {
            state: Some(s.state),
            available: s.available,
        }))
    }
}

/// A call's refusal as a gRPC status; an unknown call is named as the call refusing says, or
/// else as asked.
fn control_status(e: ControlError, call: &str, agent: &str) -> Status {
    match e {
        ControlError::NotFound(named) => {
            let named = if named.is_empty() {
                call
            } else {
                named.as_str()
            };
            Status::not_found(format!("no call {named:?} for agent {agent}"))
        }
        // The tenant's configuration, not the call's state, forbids it.
        ControlError::NotAllowed(why @ Refusal::QueueNotMonitored) => {
            Status::permission_denied(why.to_string())
        }
        ControlError::NotAllowed(why) => Status::failed_precondition(why.to_string()),
        ControlError::Invalid(why) => Status::invalid_argument(why.to_string()),
        ControlError::Unavailable(why) => Status::unavailable(why),
    }
}

fn call_info(view: CallView) -> pb::CallInfo {
    pb::CallInfo {
        call_id: view.call.call_id,
        state: view.state.name().to_owned(),
        parties: view.call.parties,
        user_data: view.call.user_data,
        capabilities: view
            .capabilities
            .iter()
            .map(|c| c.name().to_owned())
            .collect(),
        ani: view.call.ani,
        dnis: view.call.dnis,
    }
}

#[tonic::async_trait]
impl pb::calls_server::Calls for Voice {
    async fn list_calls(&self, request: Request<pb::AgentRequest>) -> Reply<pb::CallList> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let s = self
            .agents
            .status(&tenant.name, &r.agent_id)
            .await
            .map_err(|e| status(&e))?;
        let mut calls = Vec::with_capacity(s.state.calls.len());
        for call in &s.state.calls {
            // A call that ended meanwhile is simply not listed.
            if let Ok(view) = self
                .control(&tenant, &r.agent_id, call, Control::View)
                .await
            {
                calls.push(call_info(view));
            }
        }
        Ok(Response::new(pb::CallList { calls }))
    }

    async fn make_call(&self, request: Request<pb::MakeCallRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let user_data = r.user_data.into_iter().collect();
        let made = self
            .originate(&tenant, &r.agent_id, &r.destination, user_data, None)
            .await;
        self.acknowledge(&tenant, "MakeCall", &r.agent_id, "", r.reference_id, made)
            .await
    }

    async fn single_step_transfer(&self, request: Request<pb::TransferRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let operation = "SingleStepTransfer";
        if r.destination.is_empty() {
            let status = Status::invalid_argument("destination: required");
            return self
                .acknowledge(
                    &tenant,
                    operation,
                    &r.agent_id,
                    &r.call_id,
                    r.reference_id,
                    Err(status),
                )
                .await;
        }
        let control = Control::SingleStepTransfer(r.destination);
        self.call_operation(
            &tenant,
            operation,
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            control,
        )
        .await
    }

    async fn initiate_transfer(&self, request: Request<pb::TransferRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let started = async {
            let main = self.transferable(&tenant, &r.agent_id, &r.call_id).await?;
            if main.state == CallState::Established {
                self.control(&tenant, &r.agent_id, &r.call_id, Control::Hold)
                    .await?;
            }
            let thread = Some(main.call.thread_id);
            let consult = self
                .originate(
                    &tenant,
                    &r.agent_id,
                    &r.destination,
                    Default::default(),
                    thread,
                )
                .await?;
            let consulting = Control::Consulting(consult.clone());
            self.control(&tenant, &r.agent_id, &r.call_id, consulting)
                .await?;
            Ok(consult)
        };
        let outcome = started.await;
        self.acknowledge(
            &tenant,
            "InitiateTransfer",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            outcome,
        )
        .await
    }

    async fn complete_transfer(&self, request: Request<pb::ConsultRequest>) -> Reply<pb::Ack> {
        self.completion(request, "CompleteTransfer", false).await
    }

    async fn complete_conference(&self, request: Request<pb::ConsultRequest>) -> Reply<pb::Ack> {
        self.completion(request, "CompleteConference", true).await
    }

    async fn delete_from_conference(&self, request: Request<pb::PartyRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.call_operation(
            &tenant,
            "DeleteFromConference",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            Control::DeleteFromConference(r.dn),
        )
        .await
    }

    async fn alternate_call(&self, request: Request<pb::ConsultRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.consultation(
            &tenant,
            "AlternateCall",
            r,
            vec![(true, Control::Hold), (false, Control::Retrieve)],
        )
        .await
    }

    async fn reconnect_call(&self, request: Request<pb::ConsultRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.consultation(
            &tenant,
            "ReconnectCall",
            r,
            vec![
                (true, Control::Release),
                (false, Control::Consulting(String::new())),
                (false, Control::Reconnect),
            ],
        )
        .await
    }

    async fn answer(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        self.call_request(request, "Answer", Control::Answer).await
    }

    async fn hold(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        self.call_request(request, "Hold", Control::Hold).await
    }

    async fn retrieve(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        self.call_request(request, "Retrieve", Control::Retrieve)
            .await
    }

    async fn release(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        self.call_request(request, "Release", Control::Release)
            .await
    }

    async fn send_dtmf(&self, request: Request<pb::DtmfRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.call_operation(
            &tenant,
            "SendDtmf",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            Control::SendDtmf(r.digits),
        )
        .await
    }

    async fn attach_user_data(&self, request: Request<pb::UserDataRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let pairs = r.user_data.into_iter().collect();
        self.call_operation(
            &tenant,
            "AttachUserData",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            Control::AttachUserData(pairs),
        )
        .await
    }

    async fn update_user_data(&self, request: Request<pb::UserDataRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let pairs = r.user_data.into_iter().collect();
        self.call_operation(
            &tenant,
            "UpdateUserData",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            Control::UpdateUserData(pairs),
        )
        .await
    }

    async fn delete_user_data(
        &self,
        request: Request<pb::DeleteUserDataRequest>,
    ) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        self.call_operation(
            &tenant,
            "DeleteUserData",
            &r.agent_id,
            &r.call_id,
            r.reference_id,
            Control::DeleteUserData(r.keys),
        )
        .await
    }

    async fn start_recording(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        let control = Control::Record(RecordAction::Start);
        self.call_request(request, "StartRecording", control).await
    }

    async fn pause_recording(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        let control = Control::Record(RecordAction::Pause);
        self.call_request(request, "PauseRecording", control).await
    }

    async fn resume_recording(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        let control = Control::Record(RecordAction::Resume);
        self.call_request(request, "ResumeRecording", control).await
    }

    async fn stop_recording(&self, request: Request<pb::CallRequest>) -> Reply<pb::Ack> {
        let control = Control::Record(RecordAction::Stop);
        self.call_request(request, "StopRecording", control).await
    }

    async fn monitor(&self, request: Request<pb::MonitorRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let outcome = self.start_monitoring(&tenant, &r).await;
        self.acknowledge(
            &tenant,
            "Monitor",
            &r.supervisor_id,
            &r.call_id,
            r.reference_id,
            outcome,
        )
        .await
    }

    async fn stop_monitoring(&self, request: Request<pb::MonitorRequest>) -> Reply<pb::Ack> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let outcome = self.end_monitoring(&tenant, &r).await;
        self.acknowledge(
            &tenant,
            "StopMonitoring",
            &r.supervisor_id,
            &r.call_id,
            r.reference_id,
            outcome,
        )
        .await
    }
}

#[tonic::async_trait]
impl pb::queues_server::Queues for Voice {
    async fn get_queue_stats(
        &self,
        request: Request<pb::QueueStatsRequest>,
    ) -> Reply<pb::QueueStatsList> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let wanted = request.into_inner().queue;
        if !wanted.is_empty() && !tenant.config.queues.iter().any(|q| q.name == wanted) {
            return Err(Status::not_found(format!(
                "queue {wanted:?} of tenant {}",
                tenant.name
            )));
        }
        let queues = self
            .rq
            .stats(&tenant.name)
            .await
            .into_iter()
            .filter(|s| wanted.is_empty() || s.queue == wanted)
            .map(|s| pb::QueueStats {
                queue: s.queue,
                waiting: s.waiting,
                ready: s.ready,
                ready_serving: s.ready_serving,
                busy: s.busy,
                ewt_ms: s.ewt_ms,
                oldest_wait_ms: s.oldest_ms,
            })
            .collect();
        Ok(Response::new(pb::QueueStatsList { queues }))
    }
}

#[tonic::async_trait]
impl pb::events_server::Events for Voice {
    type SubscribeStream = ReceiverStream<Result<pb::StreamEvent, Status>>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Reply<Self::SubscribeStream> {
        let tenant = self.tenant(&request, &request.get_ref().tenant)?;
        let r = request.into_inner();
        let from =
            if r.cursor.is_empty() {
                None
            } else {
                Some(Cursor::decode(&r.cursor).ok_or_else(|| {
                    Status::invalid_argument("cursor: not one this API handed out")
                })?)
            };
        // One agent's events: its state, the calls of the DN it is on, its refusals.
        let filter = if r.agent_id.is_empty() {
            None
        } else {
            let s = self
                .agents
                .status(&tenant.name, &r.agent_id)
                .await
                .map_err(|e| status(&e))?;
            let dns = HashSet::from_iter((!s.state.dn.is_empty()).then_some(s.state.dn));
            Some(AgentFilter {
                key: format!("{}:{}", tenant.name, r.agent_id),
                agent: r.agent_id,
                dns,
            })
        };
        // Placed before the reply: whatever happens once the desktop holds its stream is on it.
        let follower = feed::open(self.events.clone(), tenant.name.clone(), from)
            .await
            .map_err(|e| feed_status(&e))?;
        let (feed_tx, mut feed_rx) = mpsc::channel(STREAM_BUFFER);
        let (out, stream) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(follower.run(feed_tx));
        tokio::spawn(async move {
            let mut filter = filter;
            while let Some(item) = feed_rx.recv().await {
                let sent = match item {
                    Ok((cursor, entry)) => {
                        if filter.as_mut().is_some_and(|f| !f.passes(&entry.event)) {
                            continue;
                        }
                        out.send(Ok(stream_event(cursor, entry.event.clone())))
                            .await
                    }
                    Err(e) => out.send(Err(feed_status(&e))).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// What one agent's stream lets through.
struct AgentFilter {
    agent: String,
    /// `{tenant}:{agent}`, the key of its state events.
    key: String,
    /// The DNs it has been logged in on while followed.
    dns: HashSet<String>,
}

impl AgentFilter {
    fn passes(&mut self, event: &Event) -> bool {
        match &event.payload {
            Some(Payload::Agent(a)) if event.key == self.key => {
                if !a.dn.is_empty() {
                    self.dns.insert(a.dn.clone());
                }
                true
            }
            Some(Payload::Call(c)) => c.parties.iter().any(|p| self.dns.contains(&p.dn)),
            Some(Payload::Error(e)) => e.agent_id == self.agent,
            _ => false,
        }
    }
}

fn stream_event(cursor: Cursor, event: Event) -> pb::StreamEvent {
    use pb::stream_event::Change;
    let change = match (event.topic.as_str(), event.kind.as_str()) {
        (TOPIC_AGENTSTATE, "OffHook" | "OnHook" | "DNOutOfService" | "DNBackInService") => {
            Change::DnStateChanged(event)
        }
        (TOPIC_AGENTSTATE, _) => Change::AgentStateChanged(event),
        (TOPIC_ERRORS, _) => Change::Error(event),
        _ => Change::CallStateChanged(event),
    };
    pb::StreamEvent {
        cursor: cursor.encode(),
        change: Some(change),
    }
}

fn feed_status(e: &FeedError) -> Status {
    match e {
        FeedError::Trimmed { .. } => Status::out_of_range(format!(
            "{e}: read the current state again (GetAgent), then subscribe without a cursor"
        )),
        FeedError::Store(_) => Status::unavailable(e.to_string()),
    }
}
