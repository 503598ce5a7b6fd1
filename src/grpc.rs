//! The gRPC server of a node: the provisioning API and the voice API for desktops and
//! wallboards, with gRPC health and reflection (v1 and v1alpha) so that generic tools
//! (grpcurl, grpc_health_probe, Postman) work without the .proto files.

use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::provisioning::{Provisioning, ProvisioningServer};
use crate::stats::{StatsApi, StatsServer};
use crate::voice::{AgentsServer, CallsServer, EventsServer, QueuesServer, Voice};

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    provisioning: Provisioning,
    voice: Voice,
    stats: StatsApi,
) {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ProvisioningServer<Provisioning>>()
        .await;
    health.set_serving::<AgentsServer<Voice>>().await;
    health.set_serving::<CallsServer<Voice>>().await;
    health.set_serving::<EventsServer<Voice>>().await;
    health.set_serving::<QueuesServer<Voice>>().await;
    health.set_serving::<StatsServer<StatsApi>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(
                switchboard_proto::provisioning::FILE_DESCRIPTOR_SET,
            )
            .register_encoded_file_descriptor_set(switchboard_proto::voice::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (v1, v1alpha) = match (reflection().build_v1(), reflection().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => (v1, v1alpha),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "gRPC reflection unavailable");
            return;
        }
    };
    let served = Server::builder()
        .add_service(health_service)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(ProvisioningServer::new(provisioning))
        .add_service(AgentsServer::new(voice.clone()))
        .add_service(CallsServer::new(voice.clone()))
        .add_service(QueuesServer::new(voice.clone()))
        .add_service(StatsServer::new(stats))
        .add_service(EventsServer::new(voice))
        .serve_with_incoming(TcpIncoming::from(listener))
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "gRPC server failed");
    }
}
