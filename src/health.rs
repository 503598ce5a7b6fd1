//! HTTP health endpoints for orchestrators and load balancers: `/livez` (the process answers),
//! `/readyz` (it can take traffic: its stores answer) and `/metrics` (Prometheus text). A few
//! lines of HTTP/1.1, enough for probes and scrapers.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Tells whether the node can take traffic, and what it is doing.
pub(crate) trait Readiness: Send + Sync + 'static {
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// The node's metrics in the Prometheus text format.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

pub(crate) async fn serve<R: Readiness>(listener: TcpListener, readiness: Arc<R>) {
    accept_each(listener, "health", move |stream| {
        let readiness = readiness.clone();
        async move { answer(stream, &*readiness).await }
    })
    .await;
}

/// Accepts connections for ever, each answered by `answer` on a task of its own; `what` names
/// the server in the log of an exchange that failed.
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, what: &'static str, answer: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let exchange = answer(stream);
        tokio::spawn(async move {
            if let Err(e) = exchange.await {
                tracing::debug!(%peer, error = %e, "{what} request failed");
            }
        });
    }
}

async fn answer<R: Readiness>(mut stream: TcpStream, readiness: &R) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return Ok(());
    };
    let (method, path) = request_line(&head);
    let (status, body) = match (method, path) {
        ("GET", "/livez") => ("200 OK", "ok\n".to_owned()),
        ("GET", "/readyz") => match readiness.check().await {
            Ok(()) => ("200 OK", "ready\n".to_owned()),
            Err(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        ("GET", "/metrics") => ("200 OK", readiness.metrics().await),
        ("GET", _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "method not allowed\n".to_owned()),
    };
    respond(&mut stream, status, "text/plain", &body).await
}

/// The head of an HTTP/1.1 request (request line and headers), at most 8 KiB read within 5
/// seconds; none when the client sent nothing in time.
pub(crate) async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Err(_) => Ok(None),
        Ok(result) => result.map(|()| Some(String::from_utf8_lossy(&buf).into_owned())),
    }
}

/// The method and path of a request head.
pub(crate) fn request_line(head: &str) -> (&str, &str) {
    let line = head.split("\r\n").next().unwrap_or_default();
    let mut parts = line.split(' ');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Writes a whole response and closes the connection.
pub(crate) async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
