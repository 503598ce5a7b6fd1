//! The node's HTTP endpoints (health, metrics and the wallboard, the callbacks API for GES) on
//! axum over hyper's HTTP/1.1: keep-alive, chunked bodies, gzip for the clients that take it,
//! and limits that keep slow or hostile clients from starving anyone else: a deadline for each
//! request's head (which also closes idle keep-alive connections), a cap on head and body
//! sizes, and caps on connections per listener and per source address.

pub(crate) mod callbacks;
pub(crate) mod health;
pub(crate) mod wallboard;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// What one HTTP listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Connections open at once, all sources together.
    pub(crate) connections: usize,
    /// Connections open at once from one source address.
    pub(crate) per_source: usize,
    /// How long a client has to send a request's whole head; also how long an idle
    /// keep-alive connection stays open.
    pub(crate) head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 1024,
            per_source: 64,
            head_timeout: Duration::from_secs(10),
        }
    }
}

/// The largest request head (request line and headers) and body taken.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
/// Bodies smaller than this go out as they are: gzip would save too little.
const GZIP_FROM: usize = 1024;

/// Serves `router` on `listener` for ever; `what` names the endpoints in the logs.
pub(crate) async fn serve(
    listener: TcpListener,
    what: &'static str,
    router: Router,
    limits: Limits,
) {
    let router = router
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(gzip));
    let gate = Gate::new(limits);
    let refused = switchboard_sip::repeated::Repeated::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let some close.
                tracing::warn!(endpoints = what, error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = gate.admit(peer.ip()) else {
            if let Some(count) = refused.count() {
                tracing::warn!(endpoints = what, source = %peer.ip(), refused = count,
                    connections = limits.connections, per_source = limits.per_source,
                    "HTTP connections refused: too many open (this source, or all together)");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .max_buf_size(MAX_HEAD)
                .max_headers(100)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(endpoints = what, %peer, error = %e, "HTTP connection ended");
            }
        });
    }
}

/// Counts the connections open, in all and per source.
struct Gate {
    limits: Limits,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// One connection let in; counted out when dropped.
struct Permit {
    source: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl Gate {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: Arc::default(),
        }
    }

    fn admit(&self, source: IpAddr) -> Option<Permit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_source = open.by_source.get(&source).copied().unwrap_or(0);
        if open.total >= self.limits.connections || from_source >= self.limits.per_source {
            return None;
        }
        open.total += 1;
        open.by_source.insert(source, from_source + 1);
        Some(Permit {
            source,
            open: self.open.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Gzips a whole response body of text, JSON or script for a client that accepts it, when it
/// is large enough to gain; streams (server-sent events) and small bodies go out as they are.
async fn gzip(request: Request, next: Next) -> Response {
    let accepts = request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip);
    let response = next.run(request).await;
    let compressible = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            (t.starts_with("text/") && t != "text/event-stream")
                || matches!(
                    t,
                    "application/json" | "application/javascript" | "image/svg+xml"
                )
                || t.starts_with("application/openmetrics-text")
        });
    if !accepts || !compressible || response.headers().contains_key(header::CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "response body failed");
            return Response::from_parts(parts, Body::empty());
        }
    };
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if bytes.len() < GZIP_FROM {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    let Ok(zipped) = encoder.write_all(&bytes).and_then(|()| encoder.finish()) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Response::from_parts(parts, Body::from(zipped))
}

/// Whether an Accept-Encoding value takes gzip (named, or `*`, without `q=0`).
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|coding| {
        let mut params = coding.split(';').map(str::trim);
        let name = params.next().unwrap_or_default();
        let refused = params.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_when_named_or_starred_without_q_zero() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("deflate, br"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn the_gate_caps_connections_per_source_and_in_all() {
        let gate = Gate::new(Limits {
            connections: 3,
            per_source: 2,
            ..Limits::default()
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.3".parse().expect("ip"),
        );
        let a1 = gate.admit(a).expect("first from a");
        let _a2 = gate.admit(a).expect("second from a");
        assert!(gate.admit(a).is_none(), "a third from one source");
        let _b1 = gate.admit(b).expect("b");
        assert!(gate.admit(c).is_none(), "past the total");
        drop(a1);
        assert!(
            gate.admit(c).is_some(),
            "a closed connection frees its place"
        );
    }
}
