//! A supervisor's monitoring of an agent's call, as the voice API asks it: who may monitor
//! whom (the supervisor's permission, agents and queues whose monitoring is forbidden), which
//! call, and the control the call then carries out.

use switchboard_actors::messages::sip_cluster::{Control, MonitorMode};
use switchboard_actors::tenant::{AgentConfig, Tenant, monitoring_forbidden};
use switchboard_proto::voice as pb;
use tonic::Status;

use super::{Voice, status};

impl Voice {
    /// Starts (or changes) the monitoring `r` asks; the call's id.
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
        let (supervisor, call) = self.monitored(tenant, r).await?;
        let control = Control::Monitor { supervisor, mode };
        let view = self.control(tenant, &r.agent_id, &call, control).await?;
        Ok(view.call.call_id)
    }

    /// Ends the monitoring of the agent's call by the supervisor.
    pub(super) async fn end_monitoring(
        &self,
        tenant: &Tenant,
        r: &pb::MonitorRequest,
    ) -> Result<String, Status> {
        let (_, call) = self.monitored(tenant, r).await?;
        let view = self
            .control(tenant, &r.agent_id, &call, Control::StopMonitoring)
            .await?;
        Ok(view.call.call_id)
    }

    /// The supervisor's DN and the agent's call `r` names (or the agent's current one),
    /// once the tenant's configuration allows the supervisor to monitor it.
    async fn monitored(
        &self,
        tenant: &Tenant,
        r: &pb::MonitorRequest,
    ) -> Result<(String, String), Status> {
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
        let call = match (r.call_id.as_str(), state.calls.first()) {
            ("", Some(call)) => call.clone(),
            ("", None) => {
                return Err(Status::failed_precondition(format!(
                    "agent {} has no call to monitor",
                    agent.id
                )));
            }
            (named, _) => named.to_owned(),
        };
        let view = self
            .control(tenant, &agent.id, &call, Control::View)
            .await?;
        let queues = state
            .queues
            .iter()
            .chain(Some(&view.call.queue).filter(|q| !q.is_empty()));
        for queue in queues {
            let forbidden = tenant
                .config
                .queues
                .iter()
                .any(|q| q.name == *queue && monitoring_forbidden(&q.options));
            if forbidden {
                return Err(Status::permission_denied(format!(
                    "calls of queue {queue} may not be monitored (its option monitoring is forbidden)"
                )));
            }
        }
        let dn = self.agent_dn(tenant, &supervisor.id).await?;
        Ok((dn, call))
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
