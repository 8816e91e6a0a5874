//! Between rdkafka's messages and the log port's records.

use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Timestamp};
use tracing::debug;

use crate::log::{Consumed, Record};
use crate::Result;

/// The rdkafka record for `r`, borrowing its bytes (librdkafka copies them when it enqueues).
pub(super) fn future_record<'a>(topic: &'a str, r: &'a Record) -> FutureRecord<'a, [u8], [u8]> {
    let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
    if let Some(k) = &r.key {
        fr = fr.key(k.as_ref());
    }
    if let Some(v) = &r.value {
        fr = fr.payload(v.as_ref());
    }
    if let Some(ts) = r.timestamp_ms {
        fr = fr.timestamp(ts);
    }
    if !r.headers.is_empty() {
        fr = fr.headers(owned_headers(&r.headers));
    }
    fr
}

fn owned_headers(headers: &[(String, Bytes)]) -> OwnedHeaders {
    headers.iter().fold(
        OwnedHeaders::new_with_capacity(headers.len()),
        |h, (k, v)| {
            h.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            })
        },
    )
}

fn consumed(m: &BorrowedMessage<'_>) -> Consumed {
    Consumed {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
            Timestamp::NotAvailable => 0,
        },
        key: m.key().map(Bytes::copy_from_slice),
        value: m.payload().map(Bytes::copy_from_slice),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Receives up to `max` messages, waiting at most `wait` in all.
pub(super) async fn receive<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
) -> Result<Vec<Consumed>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while out.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Err(_) => break,
            Ok(Ok(m)) => out.push(consumed(&m)),
            Ok(Err(e)) if is_fatal(&e) => return Err(e.into()),
            // Broker disconnects and the like: librdkafka reconnects by itself.
            Ok(Err(e)) => {
                debug!(error = %e, "consumer error");
                if out.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    Ok(out)
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::Fatal))
}
