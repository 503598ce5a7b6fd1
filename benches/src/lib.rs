//! Benchmarks for switchboard. The criterion benches live in `benches/`; `sipload` is the
//! REGISTER load client the SIPp comparison scripts in `sipp/` use beside SIPp.

pub mod events;
pub mod load;
pub mod tenants;

/// A request carrying the tenant's API key, as a desktop (GWS) sends it.
pub fn keyed<T>(key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {key}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The load clients' runtime: `threads` workers (one at least).
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}
