//! The node's TLS certificate as files on disk: loaded at start (a file that does not load
//! stops the node with what is wrong), and looked at every `reload_check_ms` after, so that a
//! certificate renewed in place is used for the next handshakes without a restart. A file
//! replaced by one that does not load (garbage, a certificate that does not match its key)
//! leaves the certificate in use in place, with an error in the log.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use switchboard_sip::transport::{Tls, TlsFiles, TlsSettings};

use crate::config::TlsConfig;

/// The TLS listener's settings, when a certificate and key are configured.
pub(crate) fn settings(config: &TlsConfig) -> anyhow::Result<Option<TlsSettings>> {
    let (certificate, key) = match (&config.certificate, &config.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => return Ok(None),
        _ => anyhow::bail!("[tls] needs both certificate and key (PEM files)"),
    };
    let files = TlsFiles {
        certificate,
        key,
        ca: config.ca.clone(),
    };
    let tls = Tls::load(files)
        .map_err(|e| anyhow::anyhow!(e))
        .context("[tls]")?;
    Ok(Some(TlsSettings {
        listen: config.listen,
        tls,
        handshake_timeout: Duration::from_millis(config.handshake_timeout_ms.max(100)),
    }))
}

/// Follows the files of `tls` until aborted, reloading them when one changes.
pub(crate) async fn follow(tls: Tls, every: Duration) {
    let files = tls.files().clone();
    let paths: Vec<&Path> = [
        Some(&files.certificate),
        Some(&files.key),
        files.ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| p.as_path())
    .collect();
    let stamp = || {
        paths
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
                    .ok()
            })
            .collect::<Vec<_>>()
    };
    let mut seen = stamp();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp();
        if now == seen {
            continue;
        }
        seen = now;
        match tls.reload() {
            Ok(()) => tracing::info!(certificate = %files.certificate.display(),
                "tls certificate reloaded: used for the next handshakes"),
            Err(e) => tracing::error!(error = %e,
                "tls files changed but do not load: the certificate in use stays"),
        }
    }
}
