//! Reporting for switchboard: the event sink to Kafka with a durable spool for outages.
//! Filled by the reporting issue; empty until then.
