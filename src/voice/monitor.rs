//! A supervisor's monitoring of an agent's calls, as the voice API asks it: who may monitor
//! whom (the supervisor's permission, agents and queues whose monitoring is forbidden), which
//! call (the agent's call now, or each of its calls from the next one on, which agent state
//! keeps), and the control each call then carries out.

use switchboard_actors::messages::agent_state::{Command, Monitoring};
use switchboard_actors::messages::sip_cluster::{Control, ControlError, MonitorMode, Refusal};
use switchboard_actors::tenant::{AgentConfig, MediaControl, Tenant, monitoring_forbidden};
use switchboard_proto::events::AgentState as AgentView;
use switchboard_proto::voice as pb;
use tonic::Status;

use super::{Voice, status};

impl Voice {
    /// Starts (or changes) the monitoring `r` asks; the call's id (none for next calls).
    pub(super) async fn start_monitoring(
        &self,
        tenant: &Tenant,
        r: &pb::MonitorRequest,
    ) -> Result<String, Status> {
        let mode = match pb::MonitorMode::try_from(r.mode) {
            Ok(pb::MonitorMode::Listen) => MonitorMode::Listen,
            Ok(pb::MonitorMode::Whisper) => MonitorMode::Whisper,
            Ok(pb::MonitorMode::Barge) => MonitorMode::Barge,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "mode: {} is not listen, whisper or barge",
                    r.mode
                )));
            }
        };
        let (supervisor, state) = self.allowed(tenant, r).await?;
        if next_calls(r)? {
            let msml = tenant
                .media_servers
                .first()
                .is_some_and(|m| m.control == MediaControl::Msml);
            if mode == MonitorMode::Whisper && !msml {
                return Err(Status::failed_precondition(
                    Refusal::WhisperNeedsMsml.to_string(),
                ));
            }
            let command = Command::Monitored(Some(Monitoring { supervisor, mode }));
            self.agents
                .command(&tenant.name, &r.agent_id, command)
                .await
                .map_err(|e| status(&e))?;
            return Ok(String::new());
        }
        let call = monitored_call(r, &state)?;
        let control = Control::Monitor { supervisor, mode };
        let view = self.control(tenant, &r.agent_id, &call, control).await?;
        Ok(view.call.call_id)
    }

    /// Ends the monitoring of the agent's call (or calls) by the supervisor.
    pub(super) async fn end_monitoring(
        &self,
        tenant: &Tenant,
        r: &pb::MonitorRequest,
    ) -> Result<String, Status> {
        let (_, state) = self.allowed(tenant, r).await?;
        if next_calls(r)? {
            self.agents
                .command(&tenant.name, &r.agent_id, Command::Monitored(None))
                .await
                .map_err(|e| status(&e))?;
            // The call now too, if the supervisor is in it.
            if let Some(call) = state.calls.first() {
                let stopped = self
                    .calls
                    .control(&tenant.name, call, &state.dn, Control::StopMonitoring)
                    .await;
                match stopped {
                    Ok(_) | Err(ControlError::NotAllowed(Refusal::NotMonitored)) => {}
                    Err(e) => tracing::info!(tenant = %tenant.name, call, error = %e,
                        "the agent's call could not stop being monitored"),
                }
            }
            return Ok(String::new());
        }
        let call = monitored_call(r, &state)?;
        let view = self
            .control(tenant, &r.agent_id, &call, Control::StopMonitoring)
            .await?;
        Ok(view.call.call_id)
    }

    /// The supervisor's DN and the agent's state, once the tenant's configuration allows
    /// the supervisor to monitor the agent.
    async fn allowed(
        &self,
        tenant: &Tenant,
        r: &pb::MonitorRequest,
    ) -> Result<(String, AgentView), Status> {
        let supervisor = agent(tenant, &r.supervisor_id)?;
        if !supervisor.is_supervisor() {
            return Err(Status::permission_denied(format!(
                "agent {} may not monitor calls (its option supervisor is not true)",
                supervisor.id
            )));
        }
        let agent = agent(tenant, &r.agent_id)?;
        if monitoring_forbidden(&agent.options) {
            return Err(Status::permission_denied(format!(
                "agent {}'s calls may not be monitored (its option monitoring is forbidden)",
                agent.id
            )));
        }
        let state = self
            .agents
            .status(&tenant.name, &agent.id)
            .await
            .map_err(|e| status(&e))?
            .state;
        let dn = self.agent_dn(tenant, &supervisor.id).await?;
        Ok((dn, state))
    }
}

/// The agent's call `r` names, or its call now.
fn monitored_call(r: &pb::MonitorRequest, state: &AgentView) -> Result<String, Status> {
    match (r.call_id.as_str(), state.calls.first()) {
        ("", Some(call)) => Ok(call.clone()),
        ("", None) => Err(Status::failed_precondition(format!(
            "agent {} has no call to monitor",
            r.agent_id
        ))),
        (named, _) => Ok(named.to_owned()),
    }
}

/// Whether `r` asks for the agent's next calls rather than its call now.
fn next_calls(r: &pb::MonitorRequest) -> Result<bool, Status> {
    match pb::MonitorScope::try_from(r.scope) {
        Ok(pb::MonitorScope::Call) => Ok(false),
        Ok(pb::MonitorScope::NextCalls) => Ok(true),
        Err(_) => Err(Status::invalid_argument(format!(
            "scope: {} is not call or next calls",
            r.scope
        ))),
    }
}

/// An agent of the tenant, by id.
fn agent<'a>(tenant: &'a Tenant, id: &str) -> Result<&'a AgentConfig, Status> {
    tenant
        .config
        .agents
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| Status::not_found(format!("no agent {id:?} in tenant {}", tenant.name)))
}
