//! The callbacks API for GES on its own port (9098 by default): `GET /callbacks/{id}` reports
//! a callback (state, place in its queue, estimated wait, the agent once one is reserved, the
//! call once placed) and `DELETE /callbacks/{id}` cancels one still waiting. Requests carry
//! `Authorization: Bearer <API key>` of the tenant, as on the gRPC APIs; answers are JSON.

use switchboard_actors::ors::callbacks::Callbacks;
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::auth::Keys;
use crate::health::{accept_each, read_head, request_line, respond};

pub(crate) async fn serve(listener: TcpListener, callbacks: Callbacks, keys: Keys) {
    accept_each(listener, "callbacks", move |stream| {
        let (callbacks, keys) = (callbacks.clone(), keys.clone());
        async move { answer(stream, &callbacks, &keys).await }
    })
    .await;
}

async fn answer(mut stream: TcpStream, callbacks: &Callbacks, keys: &Keys) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return Ok(());
    };
    let (method, path) = request_line(&head);
    let (status, body) = match handle(&head, method, path, callbacks, keys).await {
        Ok(status) => ("200 OK", serde_json::to_value(status).unwrap_or_default()),
        Err((status, message)) => (status, serde_json::json!({ "error": message })),
    };
    respond(
        &mut stream,
        status,
        "application/json",
        &format!("{body}\n"),
    )
    .await
}

type Refusal = (&'static str, String);

async fn handle(
    head: &str,
    method: &str,
    path: &str,
    callbacks: &Callbacks,
    keys: &Keys,
) -> Result<switchboard_actors::messages::ors::CallbackStatus, Refusal> {
    let Some(id) = path.strip_prefix("/callbacks/").filter(|id| !id.is_empty()) else {
        return Err(("404 Not Found", format!("no resource {path}")));
    };
    let tenant = tenant(head, keys)?;
    let found = match method {
        "GET" => callbacks.get(&tenant, id).await,
        "DELETE" => callbacks.cancel(&tenant, id).await,
        _ => return Err(("405 Method Not Allowed", format!("{method} {path}"))),
    };
    found.ok_or_else(|| ("404 Not Found", format!("no callback {id:?}")))
}

/// The tenant whose API key the request carries.
fn tenant(head: &str, keys: &Keys) -> Result<String, Refusal> {
    let mut metadata = MetadataMap::new();
    let authorization = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim())
    });
    if let Some(value) = authorization.and_then(|v| MetadataValue::try_from(v).ok()) {
        metadata.insert("authorization", value);
    }
    keys.tenant(&metadata, "").map_err(|status| {
        let code = match status.code() {
            tonic::Code::Unauthenticated => "401 Unauthorized",
            _ => "403 Forbidden",
        };
        (code, status.message().to_owned())
    })
}
