//! The callbacks API for GES on its own port (9098 by default): `GET /callbacks/{id}` reports
//! a callback (state, place in its queue, estimated wait, the agent once one is reserved, the
//! call once placed) and `DELETE /callbacks/{id}` cancels one still waiting. Requests carry
//! `Authorization: Bearer <API key>` of the tenant, as on the gRPC APIs; answers are JSON.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use switchboard_actors::ors::callbacks::Callbacks;

use crate::auth::{self, Keys};

#[derive(Clone)]
struct Api {
    callbacks: Callbacks,
    keys: Keys,
}

/// The callbacks routes.
pub(crate) fn router(callbacks: Callbacks, keys: Keys) -> Router {
    Router::new()
        .route("/callbacks/{id}", get(callback).delete(callback))
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            refusal(
                StatusCode::NOT_FOUND,
                format!("no resource {method} {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} {}", uri.path()),
            )
        })
        .with_state(Api { callbacks, keys })
}

async fn callback(
    State(api): State<Api>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let tenant = match tenant(&headers, &api.keys) {
        Ok(tenant) => tenant,
        Err((status, message)) => return refusal(status, message),
    };
    let found = if method == Method::DELETE {
        api.callbacks.cancel(&tenant, &id).await
    } else {
        api.callbacks.get(&tenant, &id).await
    };
    match found {
        Some(status) => Json(status).into_response(),
        None => refusal(StatusCode::NOT_FOUND, format!("no callback {id:?}")),
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The tenant whose API key the request carries.
fn tenant(headers: &HeaderMap, keys: &Keys) -> Result<String, (StatusCode, String)> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    keys.tenant_by_key(key, "").map_err(|status| {
        let code = match status.code() {
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        (code, status.message().to_owned())
    })
}
