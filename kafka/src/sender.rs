//! The sender: reads the spool in order and produces each record to Kafka, moving the
//! acknowledged offset as Kafka confirms them. Any failure (the broker away, a topic lost with
//! a broker that restarted empty, a producer error) drops the producer; the sender waits, makes
//! a new one, creates the topics again if they are missing, and starts over from the first
//! record Kafka had not acknowledged. Records Kafka did take but whose acknowledgement was lost
//! go again: delivery is at least once, and consumers drop duplicates by event id.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::spool::Reader;
use crate::{KafkaConfig, Shared, Topic};

/// Records handed to the producer and not yet acknowledged, at most.
const WINDOW: usize = 50_000;

/// librdkafka's own logs go to DEBUG: the sender reports an outage itself, once. The last
/// error librdkafka reported of a client (a connection refused, a certificate not trusted,
/// credentials refused) is kept, to say in that report why the broker cannot be reached.
#[derive(Clone, Default)]
struct Watch(Arc<Mutex<Option<Reported>>>);

/// An error librdkafka reported.
struct Reported {
    code: Option<RDKafkaErrorCode>,
    reason: String,
}

impl Watch {
    /// `failure`, with the last error librdkafka reported (which is then forgotten).
    fn explain(&self, failure: String) -> Failure {
        let reported = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match reported {
            None => Failure {
                text: failure,
                settings: false,
            },
            Some(Reported { code, reason }) => Failure {
                text: format!("{failure}; librdkafka: {reason}"),
                // These do not pass with time: the TLS or SASL settings or the broker's
                // certificate or users need changing.
                settings: matches!(
                    code,
                    Some(
                        RDKafkaErrorCode::SSL
                            | RDKafkaErrorCode::Authentication
                            | RDKafkaErrorCode::SaslAuthenticationFailed
                    )
                ),
            },
        }
    }
}

impl ClientContext for Watch {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason);
        let code = error.rdkafka_error_code();
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // "All brokers are down" follows the error that says why: that one is kept.
        if code == Some(RDKafkaErrorCode::AllBrokersDown) && last.is_some() {
            return;
        }
        *last = Some(Reported {
            code,
            reason: reason.to_owned(),
        });
    }
}

/// Why the broker could not be used.
struct Failure {
    text: String,
    /// The TLS or SASL settings are at fault, not the broker's being away.
    settings: bool,
}

/// Why a run of the sender ended.
enum Ended {
    Stopped,
    Failed(String),
}

pub(crate) async fn run(config: KafkaConfig, shared: Arc<Shared>, mut reader: Reader) {
    let mut outage: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    let mut last_reminder = Instant::now();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let watch = Watch::default();
        // Connecting may take the admin request's timeout: stopping does not wait for it.
        let connecting = connect(&config, &watch);
        tokio::pin!(connecting);
        let connected = loop {
            tokio::select! {
                result = &mut connecting => break result,
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if shared.stop.load(Ordering::Acquire) {
                        return;
                    }
                }
            }
        };
        let failure = match connected {
            Ok(producer) => {
                shared.connected.store(true, Ordering::Relaxed);
                if let Some(since) = outage.take() {
                    let pending = spooled(&shared);
                    tracing::info!(
                        away_secs = since.elapsed().as_secs(),
                        spooled_bytes = pending,
                        "kafka reachable again: sending the spooled events in order"
                    );
                }
                backoff = Duration::from_millis(200);
                let ack_within = Duration::from_millis(config.delivery_timeout_ms.max(1000));
                match pump(&producer, &mut reader, &shared, ack_within).await {
                    Ended::Stopped => return,
                    Ended::Failed(why) => why,
                }
            }
            Err(why) => why,
        };
        let failure = watch.explain(failure);
        let error = &failure.text;
        shared.connected.store(false, Ordering::Relaxed);
        match outage {
            None => {
                if failure.settings {
                    tracing::error!(brokers = %config.brokers, %error, spool = %config.spool_dir.display(),
                        "kafka unreachable: the TLS or SASL handshake failed, check the security \
                         settings of [kafka]; events are kept in the spool and sent once it succeeds");
                } else {
                    tracing::warn!(brokers = %config.brokers, %error, spool = %config.spool_dir.display(),
                        "kafka unreachable: events are kept in the spool and sent when it returns");
                }
                outage = Some(Instant::now());
                last_reminder = Instant::now();
            }
            Some(since) if last_reminder.elapsed() >= Duration::from_secs(30) => {
                tracing::warn!(away_secs = since.elapsed().as_secs(), spooled_bytes = spooled(&shared),
                    %error, "kafka still unreachable; spooling");
                last_reminder = Instant::now();
            }
            Some(_) => tracing::debug!(%error, "kafka still unreachable"),
        }
        // New events wake the sender, but do not cut the back-off short; stopping does.
        let until = tokio::time::Instant::now() + backoff;
        loop {
            let woken = tokio::time::timeout_at(until, shared.wake.notified()).await;
            if woken.is_err() || shared.stop.load(Ordering::Acquire) {
                break;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn spooled(shared: &Shared) -> u64 {
    shared
        .written
        .load(Ordering::Acquire)
        .saturating_sub(shared.acked.load(Ordering::Acquire))
}

/// A producer, with the reporting topics present on the broker.
async fn connect(config: &KafkaConfig, watch: &Watch) -> Result<FutureProducer<Watch>, String> {
    let mut client = ClientConfig::new();
    for (name, value) in config.client_properties() {
        client.set(name, value);
    }
    let admin: AdminClient<Watch> = client
        .create_with_context(watch.clone())
        .map_err(|e| format!("admin client: {e}"))?;
    // The producer is made first: it serves librdkafka's error reports (the admin client does
    // not), so a refused connection or certificate is known by the time the admin request
    // times out.
    let timeout = config.delivery_timeout_ms.max(1000).to_string();
    let producer = client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", &timeout)
        .set("queue.buffering.max.messages", (WINDOW * 2).to_string())
        .create_with_context(watch.clone())
        .map_err(|e| format!("producer: {e}"))?;
    let topics: Vec<NewTopic<'_>> = Topic::ALL
        .iter()
        .map(|t| {
            NewTopic::new(
                t.name(),
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(5)))
        .operation_timeout(Some(Duration::from_secs(5)));
    let results = admin
        .create_topics(topics.iter(), &options)
        .await
        .map_err(|e| format!("creating topics: {e}"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "kafka topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("creating topic {topic}: {code}")),
        }
    }
    Ok(producer)
}

/// Sends from the first unacknowledged record until told to stop or something fails.
async fn pump(
    producer: &FutureProducer<Watch>,
    reader: &mut Reader,
    shared: &Shared,
    ack_within: Duration,
) -> Ended {
    let from = shared.acked.load(Ordering::Acquire);
    if let Err(e) = reader.seek(from) {
        return Ended::Failed(format!("spool: {e}"));
    }
    let mut inflight: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    loop {
        while inflight.len() < WINDOW {
            let (end, record) = match reader.next() {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(e) => match skip_damage(reader, shared, &e) {
                    Some(()) => continue,
                    None => return Ended::Failed(format!("spool: {e}")),
                },
            };
            let sent = producer.send_result(
                FutureRecord::to(record.topic.name())
                    .key(&record.key)
                    .payload(&record.payload),
            );
            match sent {
                Ok(delivery) => inflight.push_back((end, delivery)),
                // Too large for the producer: no retry will ever take it.
                Err((e, _)) if refused_for_good(&e) => {
                    give_up(record.topic.name(), &record.key, &e, shared)
                }
                Err((e, _)) => return Ended::Failed(format!("producing: {e}")),
            }
        }
        let Some((end, delivery)) = inflight.front_mut() else {
            if shared.stop.load(Ordering::Acquire) {
                return Ended::Stopped;
            }
            // Nothing to send: wait for the writer.
            let _ = tokio::time::timeout(Duration::from_millis(200), shared.wake.notified()).await;
            continue;
        };
        let end = *end;
        if shared.stop.load(Ordering::Acquire) {
            // Stopping: what is in flight gets a few seconds.
            match tokio::time::timeout(Duration::from_secs(3), delivery).await {
                Ok(Ok(Ok(_))) => {}
                _ => return Ended::Stopped,
            }
        } else {
            // librdkafka keeps retrying a record that may have reached the broker rather than
            // time it out (the idempotent producer's rule): the sender's own deadline is what
            // notices a broker gone.
            match tokio::time::timeout(ack_within, delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((e, message)))) if refused_for_good(&e) => {
                    // The broker refuses this record whatever happens: it is given up, and
                    // the sender starts over after it with a fresh producer.
                    let key = message.key().unwrap_or_default();
                    give_up(message.topic(), key, &e, shared);
                    inflight.pop_front();
                    shared.acked.fetch_max(end, Ordering::AcqRel);
                    return Ended::Failed(format!("a record refused: {e}"));
                }
                Ok(Ok(Err((e, _)))) => return Ended::Failed(e.to_string()),
                Ok(Err(_)) => return Ended::Failed("the producer went away".into()),
                Err(_) => {
                    return Ended::Failed(format!(
                        "no acknowledgement within {} ms",
                        ack_within.as_millis()
                    ));
                }
            }
        }
        inflight.pop_front();
        shared.acked.fetch_max(end, Ordering::AcqRel);
        shared.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Errors that no retry of the record can mend: the record itself is refused (too large for
/// the producer's or the broker's limit, or invalid to the broker).
fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Counts and alarms a record Kafka will never take; the sender goes on without it rather
/// than stop every later event behind it.
fn give_up(topic: &str, key: &[u8], error: &KafkaError, shared: &Shared) {
    shared.lost_one(
        format_args!(
            "Kafka refuses an event for good ({error}; raise the broker's message.max.bytes?): it is skipped"
        ),
        &String::from_utf8_lossy(key),
        topic,
    );
}

/// A record in the middle of the spool that does not read back (the disk damaged it): the
/// rest of its segment is skipped, the loss counted and alarmed. `None` when there is
/// nothing to skip to.
fn skip_damage(reader: &mut Reader, shared: &Shared, error: &std::io::Error) -> Option<()> {
    let at = reader.position();
    let next = reader.skip_segment().ok().flatten()?;
    shared.lost_one(
        format_args!(
            "event spool damaged mid-file at offset {at} ({error}): the rest of the segment, up to {next}, is skipped"
        ),
        "",
        "the rest of a segment",
    );
    shared.damaged.fetch_add(next - at, Ordering::Relaxed);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_explained_by_the_error_that_caused_it() {
        let watch = Watch::default();
        assert!(!watch.explain("timed out".into()).settings);
        watch.error(
            KafkaError::Global(RDKafkaErrorCode::SSL),
            "SSL handshake failed: certificate verify failed",
        );
        watch.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let failure = watch.explain("creating topics: timed out".into());
        assert_eq!(
            failure.text,
            "creating topics: timed out; librdkafka: SSL handshake failed: certificate verify failed"
        );
        assert!(failure.settings);
        // Explained once: the next outage is explained by its own errors.
        watch.error(
            KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "Connection refused",
        );
        let failure = watch.explain("timed out".into());
        assert!(failure.text.ends_with("Connection refused"));
        assert!(!failure.settings);
    }
}
