//! Kafka settings, as the node file's `[kafka]` section holds them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// How an event's payload is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The protobuf JSON mapping of the event (`EventJson`).
    #[default]
    Json,
    /// The `switchboard.events.v1.Event` message, binary.
    Protobuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub format: Format,
    /// Partitions of the topics when switchboard creates them (it never changes existing ones).
    pub partitions: i32,
    /// Their replication factor; -1 (the default) takes the broker's `default.replication.factor`.
    pub replication: i32,
    /// Where events wait for the broker.
    pub spool_dir: PathBuf,
    /// The spool's limit: events that find it full are lost (counted, logged, alarmed).
    pub spool_max_bytes: u64,
    /// The share of the limit past which the node refuses new calls and registrations, so
    /// the calls in progress have the rest.
    pub spool_high_water: f64,
    /// How often the spool is synced to disk: a crash of the process may lose the events of
    /// the last window.
    pub sync_ms: u64,
    /// How long Kafka may take to acknowledge an event before the broker counts as away and
    /// the sender starts over from the spool.
    pub delivery_timeout_ms: u64,
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: String,
    /// CA bundle to verify the brokers with (PEM).
    pub ssl_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for brokers that want one.
    pub ssl_certificate: Option<PathBuf>,
    pub ssl_key: Option<PathBuf>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// Further librdkafka properties, passed as they are.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            format: Format::Json,
            partitions: 6,
            replication: -1,
            spool_dir: PathBuf::from("switchboard-spool"),
            spool_max_bytes: 1 << 30,
            spool_high_water: 0.8,
            sync_ms: 50,
            delivery_timeout_ms: 10_000,
            security_protocol: "plaintext".into(),
            ssl_ca: None,
            ssl_certificate: None,
            ssl_key: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty".into());
        }
        if !(self.spool_high_water > 0.0 && self.spool_high_water < 1.0) {
            return Err(format!(
                "spool_high_water is {}: it must lie between 0 and 1 (a share of spool_max_bytes)",
                self.spool_high_water
            ));
        }
        if self.spool_max_bytes < 64 * 1024 {
            return Err(format!(
                "spool_max_bytes is {}: at least 65536",
                self.spool_max_bytes
            ));
        }
        let protocol = self.security_protocol.to_ascii_lowercase();
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&protocol.as_str()) {
            return Err(format!(
                "security_protocol {:?}: one of plaintext, ssl, sasl_plaintext, sasl_ssl",
                self.security_protocol
            ));
        }
        if protocol.starts_with("sasl") {
            let mechanism = self.sasl_mechanism.as_deref().unwrap_or("");
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism) {
                return Err(format!(
                    "sasl_mechanism {mechanism:?}: {protocol} needs PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ));
            }
            if self.sasl_username.is_none() || self.sasl_password.is_none() {
                return Err(format!("{protocol} needs sasl_username and sasl_password"));
            }
        }
        if !(1..=10_000).contains(&self.partitions) {
            return Err(format!("partitions is {}: 1 to 10000", self.partitions));
        }
        if self.replication != -1 && !(1..=100).contains(&self.replication) {
            return Err(format!(
                "replication is {}: 1 to 100, or -1 for the broker's default",
                self.replication
            ));
        }
        Ok(())
    }

    pub(crate) fn high_water_bytes(&self) -> u64 {
        (self.spool_max_bytes as f64 * self.spool_high_water) as u64
    }

    /// Segments small enough that acknowledged ones go soon, and at most 64 MiB.
    pub(crate) fn segment_bytes(&self) -> u64 {
        (self.spool_max_bytes / 16).clamp(64 * 1024, 64 << 20)
    }

    /// The librdkafka properties of the producer and the admin client.
    pub(crate) fn client_properties(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = vec![
            ("bootstrap.servers".into(), self.brokers.clone()),
            ("client.id".into(), "switchboard".into()),
            (
                "security.protocol".into(),
                self.security_protocol.to_ascii_lowercase(),
            ),
        ];
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let optional = [
            ("ssl.ca.location", path(&self.ssl_ca)),
            ("ssl.certificate.location", path(&self.ssl_certificate)),
            ("ssl.key.location", path(&self.ssl_key)),
            ("sasl.mechanisms", self.sasl_mechanism.clone()),
            ("sasl.username", self.sasl_username.clone()),
            ("sasl.password", self.sasl_password.clone()),
        ];
        p.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?))),
        );
        p.extend(self.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_needs_a_known_mechanism_and_credentials() {
        let mut c = KafkaConfig {
            security_protocol: "SASL_SSL".into(),
            ..KafkaConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("no mechanism")
                .contains("sasl_mechanism")
        );
        c.sasl_mechanism = Some("SCRAM-SHA-512".into());
        assert!(c.validate().expect_err("no user").contains("sasl_username"));
        c.sasl_username = Some("switchboard".into());
        c.sasl_password = Some("secret".into());
        c.validate().expect("complete");
        let props = c.client_properties();
        assert!(props.contains(&("security.protocol".into(), "sasl_ssl".into())));
        assert!(props.contains(&("sasl.mechanisms".into(), "SCRAM-SHA-512".into())));
    }

    #[test]
    fn a_high_water_mark_outside_the_spool_is_refused() {
        let c = KafkaConfig {
            spool_high_water: 1.5,
            ..KafkaConfig::default()
        };
        assert!(
            c.validate()
                .expect_err("out of range")
                .contains("spool_high_water")
        );
    }
}
