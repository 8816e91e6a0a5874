//! A member of a Kafka consumer group: assignments, polling, commits and transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::spawn_blocking;
use tracing::{info, warn};

use super::message::{future_record, receive};
use crate::log::{Consumed, GroupOptions, Record, TopicPartitionOffset};
use crate::{Error, Result};

/// Logs a group member's assignments as they change, and keeps what changed for the member's
/// owner to act on ([`GroupConsumer::take_rebalances`](super::GroupConsumer::take_rebalances)).
pub(super) struct GroupContext {
    pub(super) group: String,
    pub(super) changes: Arc<std::sync::Mutex<crate::log::Rebalances>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| {
            tpl.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(group = %self.group, partitions = %partitions(tpl), "partitions assigned");
                let mut c = self.changes.lock().expect("rebalance lock");
                c.assigned.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
            }
            Rebalance::Revoke(tpl) => {
                info!(group = %self.group, partitions = %partitions(tpl), "partitions revoked");
                let mut c = self.changes.lock().expect("rebalance lock");
                c.revoked.extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
            }
            Rebalance::Error(e) => warn!(group = %self.group, error = %e, "rebalance failed"),
        }
    }
}

/// A member of a Kafka consumer group.
pub struct KafkaGroup {
    pub(super) consumer: Arc<StreamConsumer<GroupContext>>,
    pub(super) changes: Arc<std::sync::Mutex<crate::log::Rebalances>>,
    pub(super) txn: Option<FutureProducer>,
    pub(super) options: GroupOptions,
    pub(super) log: super::KafkaLog,
}

impl std::fmt::Debug for KafkaGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaGroup")
            .field("group", &self.options.group)
            .field("transactional", &self.txn.is_some())
            .finish()
    }
}

pub(super) fn tpl_of(offsets: &[TopicPartitionOffset]) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for o in offsets {
        tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.offset))?;
    }
    Ok(tpl)
}

impl KafkaGroup {
    pub(in crate::log) fn take_rebalances(&self) -> crate::log::Rebalances {
        std::mem::take(&mut *self.changes.lock().expect("rebalance lock"))
    }

    pub(in crate::log) async fn poll(
        &mut self,
        max: usize,
        linger: Duration,
    ) -> Result<Vec<Consumed>> {
        receive(&self.consumer, max, linger).await
    }

    pub(in crate::log) async fn commit(&mut self, offsets: &[TopicPartitionOffset]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let tpl = tpl_of(offsets)?;
        let consumer = self.consumer.clone();
        spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await??;
        Ok(())
    }

    pub(in crate::log) async fn produce_and_commit(
        &mut self,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        let Some(producer) = self.txn.clone() else {
            return Err(Error::Config(
                "produce_and_commit on a group consumer that is not transactional".into(),
            ));
        };
        let result = self.transaction(&producer, records, offsets).await;
        if let Err(e) = &result {
            warn!(group = %self.options.group, error = %e, "transaction failed; aborting");
            let p = producer.clone();
            let timeout = self.log.timeout();
            let aborted = spawn_blocking(move || p.abort_transaction(timeout)).await?;
            if let Err(abort_error) = aborted {
                // A fenced or fatally failed producer cannot be reused: start a new one.
                warn!(error = %abort_error, "abort failed; recreating the transactional producer");
                self.txn = Some(self.log.transactional_producer(&self.options).await?);
            }
        }
        result
    }

    async fn transaction(
        &self,
        producer: &FutureProducer,
        records: Vec<(String, Record)>,
        offsets: &[TopicPartitionOffset],
    ) -> Result<()> {
        producer.begin_transaction()?;
        let mut futures = Vec::with_capacity(records.len());
        for (topic, r) in &records {
            futures.push(producer.send(future_record(topic, r), Duration::from_secs(30)));
        }
        for r in join_all(futures).await {
            r.map_err(|(e, _)| Error::Kafka(e))?;
        }
        let tpl = tpl_of(offsets)?;
        let metadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| Error::Config("consumer has no group metadata".into()))?;
        let p = producer.clone();
        let timeout = self.log.timeout();
        spawn_blocking(move || {
            if tpl.count() > 0 {
                p.send_offsets_to_transaction(&tpl, &metadata, timeout)?;
            }
            p.commit_transaction(timeout)
        })
        .await??;
        Ok(())
    }

    pub(in crate::log) async fn rewind(&mut self) -> Result<()> {
        let consumer = self.consumer.clone();
        let timeout = self.log.timeout();
        spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let committed = consumer.committed_offsets(assigned, timeout)?;
            let mut seek = TopicPartitionList::with_capacity(committed.count());
            for e in committed.elements() {
                e.error()?;
                let to = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    // Never committed: where auto.offset.reset=earliest starts.
                    Offset::Invalid => Offset::Beginning,
                    other => {
                        return Err(Error::Topic(
                            e.topic().to_owned(),
                            format!(
                                "partition {}: unexpected committed offset {other:?}",
                                e.partition()
                            ),
                        ))
                    }
                };
                seek.add_partition_offset(e.topic(), e.partition(), to)?;
            }
            // Each partition's seek can fail on its own; every one must have moved.
            for e in consumer.seek_partitions(seek, timeout)?.elements() {
                e.error()?;
            }
            Ok::<_, Error>(())
        })
        .await??;
        Ok(())
    }

    pub(in crate::log) async fn committed(&self, topic: &str) -> Result<Vec<Option<i64>>> {
        let n = self.log.partition_count(topic).await?;
        let consumer = self.consumer.clone();
        let timeout = self.log.timeout();
        let topic = topic.to_owned();
        spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..n as i32 {
                tpl.add_partition(&topic, p);
            }
            let c = consumer.committed_offsets(tpl, timeout)?;
            let by_partition: HashMap<i32, Option<i64>> = c
                .elements()
                .iter()
                .map(|e| {
                    (
                        e.partition(),
                        match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        },
                    )
                })
                .collect();
            Ok((0..n as i32)
                .map(|p| by_partition.get(&p).copied().flatten())
                .collect())
        })
        .await?
    }
}
