//! The wallboard: a page for a wall screen or a laptop showing a tenant's queues and agents
//! live, from the node's statistics. Plain HTML, CSS and JavaScript built into the binary;
//! figures over server-sent events, within a second of a change.
//!
//! - `GET /wallboard`: the board, or a login form without a valid key.
//! - `POST /wallboard/login` (form field `key`): a tenant's API key, or one that reads
//!   statistics only (the wallboard's); kept in an HTTP-only cookie for the board's path.
//!   `GET /wallboard/login?key=` does the same from a link (for a screen set up once).
//! - `POST /wallboard/logout`: forgets it.
//! - `GET /wallboard/stats` and `/wallboard/events`: the figures as JSON, once or as a stream
//!   (the cookie, or `Authorization: Bearer <key>`); `?queue=` narrows them to one queue.
//!
//! No key: 401. A key of another tenant than `?tenant=` asks for: 403. A queue the tenant
//! lacks: 404. Nothing else is said.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::{self, Keys};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use switchboard_actors::stats::engine::{Both, TenantNow};
use switchboard_actors::stats::keeper::{Shown, Statistics, next_update};
use switchboard_actors::stats::periods::Counts;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

const COOKIE: &str = "sb_wallboard";
const PAGE: &str = include_str!("wallboard/board.html");
const LOGIN: &str = include_str!("wallboard/login.html");
const SCRIPT: &str = include_str!("wallboard/board.js");
const STYLE: &str = include_str!("wallboard/board.css");
/// Changes closer than this go out together; with none, the figures go out every second
/// anyway (the times run).
const CALM: Duration = Duration::from_millis(200);
const TICK: Duration = Duration::from_secs(1);

/// Updates of one tenant's figures, as JSON, to the clients that follow them.
type Feed = Arc<watch::Sender<Arc<str>>>;

#[derive(Clone)]
struct Board {
    keys: Keys,
    statistics: Statistics,
    /// Each tenant's figures as the board's stream sends them, made once for all its
    /// clients (`(tenant, queue)`: every queue when empty), while any client follows them.
    feeds: Arc<Mutex<HashMap<(String, String), Feed>>>,
}

/// The wallboard's routes.
pub(crate) fn router(keys: Keys, statistics: Statistics) -> Router {
    Router::new()
        .route("/wallboard", get(page))
        .route("/wallboard/login", post(login).get(login_link))
        .route("/wallboard/logout", post(logout))
        .route("/wallboard/stats", get(stats))
        .route("/wallboard/events", get(events))
        .route(
            "/wallboard/board.js",
            get(|| async { ([(header::CONTENT_TYPE, "application/javascript")], SCRIPT) }),
        )
        .route(
            "/wallboard/board.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], STYLE) }),
        )
        .with_state(Board {
            keys,
            statistics,
            feeds: Arc::default(),
        })
}

#[derive(Deserialize, Default)]
struct Wanted {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    queue: String,
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

/// Why a request is refused, as little as needed.
fn refused(status: StatusCode) -> Response {
    let message = match status {
        StatusCode::UNAUTHORIZED => "a key is needed",
        StatusCode::FORBIDDEN => "this key does not reach that tenant",
        _ => "not found",
    };
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Board {
    /// The key a request carries: its bearer token, or the board's cookie.
    fn key(headers: &HeaderMap) -> Option<String> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::bearer)
            .map(str::to_owned);
        bearer.or_else(|| {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
                .map(str::to_owned)
        })
    }

    /// The tenant the key reads, if it may read `wanted`'s.
    fn tenant(&self, key: Option<&str>, wanted: &Wanted) -> Result<String, StatusCode> {
        let tenant = self
            .keys
            .reader_by_key(key, &wanted.tenant)
            .map_err(|status| match status.code() {
                tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            })?;
        let Some(shown) = self.statistics.shown(&tenant) else {
            return Err(StatusCode::NOT_FOUND);
        };
        if !wanted.queue.is_empty() && !shown.queues.contains(&wanted.queue) {
            return Err(StatusCode::NOT_FOUND);
        }
        Ok(tenant)
    }

    /// The stream of `tenant`'s figures (of `queue`, or all), shared by every client that
    /// follows it: one task makes each update after a change (changes closer than `CALM` go
    /// together) or every `TICK`, and stops once its last client has gone.
    fn feed(&self, tenant: String, queue: String) -> Option<watch::Receiver<Arc<str>>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant, queue);
        if let Some(feed) = feeds.get(&key) {
            return Some(feed.subscribe());
        }
        let mut changes = self.statistics.changes(&key.0)?;
        let first = self.figures(&key.0, &key.1)?.to_string();
        let (tx, rx) = watch::channel::<Arc<str>>(first.into());
        let tx = Arc::new(tx);
        feeds.insert(key.clone(), tx.clone());
        let board = self.clone();
        tokio::spawn(async move {
            loop {
                if !next_update(&mut changes, CALM, TICK).await {
                    break;
                }
                {
                    // Its clients gone: the next one starts a feed of its own.
                    let mut feeds = board.feeds.lock().unwrap_or_else(|e| e.into_inner());
                    if tx.receiver_count() == 0 {
                        feeds.remove(&key);
                        return;
                    }
                }
                let Some(figures) = board.figures(&key.0, &key.1) else {
                    break;
                };
                tx.send_replace(figures.to_string().into());
            }
            let mut feeds = board.feeds.lock().unwrap_or_else(|e| e.into_inner());
            feeds.remove(&key);
        });
        Some(rx)
    }

    fn figures(&self, tenant: &str, queue: &str) -> Option<serde_json::Value> {
        let (now, shown) = self.statistics.now(tenant, switchboard_actors::unix_ms())?;
        Some(json(tenant, &now, &shown, queue))
    }
}

async fn page(State(board): State<Board>, headers: HeaderMap) -> Response {
    let key = Board::key(&headers);
    match board.tenant(key.as_deref(), &Wanted::default()) {
        Ok(_) => Html(PAGE).into_response(),
        // A key that no longer works: asked again.
        Err(_) if key.is_some() => key_refused(),
        Err(_) => Html(LOGIN.replace("<!--why-->", "")).into_response(),
    }
}

/// The login form again, saying the key given does not open a board.
fn key_refused() -> Response {
    let form = LOGIN.replace("<!--why-->", "That key does not open a wallboard.");
    (StatusCode::UNAUTHORIZED, Html(form)).into_response()
}

async fn login_link(State(board): State<Board>, Query(form): Query<LoginForm>) -> Response {
    login(State(board), Form(form)).await
}

async fn login(State(board): State<Board>, Form(form): Form<LoginForm>) -> Response {
    let key = form.key.trim();
    // Kept in a cookie: a key that could not be is no key for the board.
    if key.contains([';', ',', ' ', '"', '\\'])
        || board.tenant(Some(key), &Wanted::default()).is_err()
    {
        return key_refused();
    }
    let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}={key}; Path=/wallboard; HttpOnly; SameSite=Strict; Max-Age=2592000"
    )) else {
        return refused(StatusCode::UNAUTHORIZED);
    };
    let mut response = Redirect::to("/wallboard").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

async fn logout() -> Response {
    let mut response = Redirect::to("/wallboard").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sb_wallboard=; Path=/wallboard; HttpOnly; Max-Age=0"),
    );
    response
}

async fn stats(
    State(board): State<Board>,
    headers: HeaderMap,
    Query(wanted): Query<Wanted>,
) -> Response {
    let tenant = match board.tenant(Board::key(&headers).as_deref(), &wanted) {
        Ok(tenant) => tenant,
        Err(status) => return refused(status),
    };
    match board.figures(&tenant, &wanted.queue) {
        Some(figures) => Json(figures).into_response(),
        None => refused(StatusCode::NOT_FOUND),
    }
}

async fn events(
    State(board): State<Board>,
    headers: HeaderMap,
    Query(wanted): Query<Wanted>,
) -> Response {
    let tenant = match board.tenant(Board::key(&headers).as_deref(), &wanted) {
        Ok(tenant) => tenant,
        Err(status) => return refused(status),
    };
    let Some(mut feed) = board.feed(tenant, wanted.queue) else {
        return refused(StatusCode::NOT_FOUND);
    };
    let (out, stream) = tokio::sync::mpsc::channel::<Arc<str>>(2);
    tokio::spawn(async move {
        loop {
            let figures = feed.borrow_and_update().clone();
            if out.send(figures).await.is_err() {
                return;
            }
            tokio::select! {
                changed = feed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = out.closed() => return,
            }
        }
    });
    let events =
        ReceiverStream::new(stream).map(|data| Ok::<_, Infallible>(Event::default().data(&*data)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The figures as the board reads them.
fn json(tenant: &str, now: &TenantNow, shown: &Shown, queue: &str) -> serde_json::Value {
    let periods = |b: &Both| {
        serde_json::json!({
            "last15Minutes": counts(&b.window),
            "today": counts(&b.today),
        })
    };
    serde_json::json!({
        "tenant": tenant,
        "atMs": now.at_ms,
        "timeZone": shown.time_zone,
        "serviceLevelSecs": shown.service_level_secs,
        "shortAbandonSecs": shown.short_abandon_secs,
        "waiting": now.waiting,
        "longestWaitMs": now.longest_wait_ms,
        "figures": periods(&now.counts),
        "queues": now.queues.iter().filter(|q| queue.is_empty() || q.name == queue).map(|q| serde_json::json!({
            "queue": q.name,
            "waiting": q.waiting,
            "longestWaitMs": q.longest_wait_ms,
            "estimatedWaitMs": q.estimated_wait_ms,
            "ready": q.ready,
            "busy": q.busy,
            "figures": periods(&q.counts),
        })).collect::<Vec<_>>(),
        "agents": now.agents.iter().map(|a| serde_json::json!({
            "agentId": a.id,
            "dn": a.dn,
            "state": a.state,
            "reason": a.reason,
            "timeInStateMs": a.time_in_state_ms,
            "onCall": a.on_call,
            "figures": periods(&a.counts),
        })).collect::<Vec<_>>(),
        "groups": now.groups.iter().map(|g| serde_json::json!({
            "group": g.name,
            "states": g.states.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "figures": periods(&g.counts),
        })).collect::<Vec<_>>(),
    })
}

fn counts(c: &Counts) -> serde_json::Value {
    serde_json::json!({
        "offered": c.offered,
        "answered": c.answered,
        "answeredInTime": c.answered_in_time,
        "abandoned": c.abandoned,
        "shortAbandoned": c.short_abandoned,
        "transfers": c.transfers,
        "handled": c.handled,
        "serviceLevel": c.service_level(),
        "averageSpeedOfAnswerMs": c.average_answer_ms(),
        "averageHandleMs": c.average_handle_ms(),
        "occupancy": c.occupancy(),
    })
}
