//! Reads from the Parquet archive itself, the files the sink wrote:
//! `<archive>/stream=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<offset>.parquet`.
//!
//! A query never reads the whole archive. It lists only its stream's directory and the `date=`
//! directories its range touches, opens only the footers of those files, skips every row group
//! whose `ts` statistics fall outside the range, and reads only the columns it needs. A page of
//! entries reads row groups in time order and stops as soon as no further row group can hold an
//! entry of the page.
//!
//! An aggregation streams its row groups through per-window accumulators ([`Aggregator`]), in
//! the order of their first time, closing each window once no row group still to read can hold
//! it. Every read scans at most `--archive-read-max-rows` rows; one that needs more is answered
//! `400` naming the limit, an aggregation before it reads anything.
//!
//! Compaction replaces small files with a merged one; a reader that lists the directory in the
//! middle of it can see both. Files of one partition and date hold disjoint offset ranges
//! otherwise, so only where their ranges overlap are rows deduplicated, by `seq` (unique in a
//! stream).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::statistics::Statistics;
use serde_json::Value;
use thingtotal_common::archive::{
    partition_of, property_column, Archive, ArchiveFile, FIRST_OFFSET, LAST_OFFSET,
};
use thingtotal_common::envelope::format_time;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::LeafType;

use super::shape::{coerce, float, Shape};
use super::{point_key, AggQuery, Aggregator, EntriesQuery, Range, Row, Windows};

/// The Parquet archive as a read backend.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveReader {
    archive: Archive,
    /// File names start with `<topic>+`.
    topic: String,
    /// The most rows one read scans.
    max_rows: usize,
}

/// A row group that may hold entries of the range.
#[derive(Debug, Clone)]
struct Candidate {
    file: Arc<(ArchiveFile, ArrowReaderMetadata)>,
    row_group: usize,
    min_us: i64,
    max_us: i64,
    rows: usize,
    /// Its file's offsets overlap another file's: its rows may be there too.
    dedup: bool,
}

fn failed(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable("the archive could not be read", &e)
}

impl ArchiveReader {
    /// A reader of `archive`'s files of `valid_topic` that scans at most `max_rows` rows a read.
    pub(crate) fn new(archive: Archive, valid_topic: &str, max_rows: usize) -> Self {
        Self {
            archive,
            topic: valid_topic.to_owned(),
            max_rows,
        }
    }

    /// `400` for a read that would scan `rows` rows, more than a read may.
    fn too_many(&self, rows: usize) -> Problem {
        Problem::bad_request(format!(
            "this read would scan at least {rows} rows of the archive, and one read scans at \
             most {} (--archive-read-max-rows): narrow the range",
            self.max_rows
        ))
    }

    /// A page of entries, in the query's order.
    pub(crate) async fn entries(
        &self,
        shape: &Shape,
        q: &EntriesQuery,
    ) -> Result<Vec<Row>, Problem> {
        let mut candidates = self.candidates(shape.stream_id, q.range).await?;
        // Row groups wholly on the near side of the cursor hold nothing of the page.
        if let Some(after) = q.after {
            candidates.retain(|c| {
                if q.desc {
                    point_key(c.min_us, 0) < after
                } else {
                    point_key(c.max_us, 999) > after
                }
            });
        }
        if q.desc {
            candidates.sort_by_key(|c| std::cmp::Reverse(c.max_us));
        } else {
            candidates.sort_by_key(|c| c.min_us);
        }
        let all = shape.all();
        let mut seen = HashSet::new();
        let mut rows: Vec<Row> = Vec::new();
        let order = |rows: &mut Vec<Row>| {
            if q.desc {
                rows.sort_by_key(|r| std::cmp::Reverse(r.key));
            } else {
                rows.sort_by_key(|r| r.key);
            }
            rows.truncate(q.limit);
        };
        let mut scanned = 0;
        for c in &candidates {
            if rows.len() >= q.limit {
                order(&mut rows);
                // The page is full: stop once no later row group can hold an entry before its
                // last one.
                let last = rows[rows.len() - 1].key;
                let beyond = if q.desc {
                    point_key(c.max_us, 999) < last
                } else {
                    point_key(c.min_us, 0) > last
                };
                if beyond {
                    break;
                }
            }
            scanned += c.rows;
            if scanned > self.max_rows {
                return Err(self.too_many(scanned));
            }
            read_group(&self.archive, c, shape, &all, &mut |r| {
                if q.range.contains(r.ts_us)
                    && q.past_cursor(r.key)
                    && (!c.dedup || seen.insert(r.seq))
                {
                    rows.push(r);
                    // Hold a page and a page more, not a whole row group.
                    if rows.len() >= 2 * q.limit {
                        order(&mut rows);
                    }
                }
                Ok(())
            })
            .await?;
        }
        order(&mut rows);
        Ok(rows)
    }

    /// The query's windows, aggregated while the row groups stream by.
    pub(crate) async fn aggregate(&self, shape: &Shape, q: &AggQuery) -> Result<Windows, Problem> {
        let mut candidates = self.candidates(shape.stream_id, q.range).await?;
        let rows = candidates.iter().map(|c| c.rows).sum();
        if rows > self.max_rows {
            return Err(self.too_many(rows));
        }
        candidates.sort_by_key(|c| c.min_us);
        let mut agg = Aggregator::new(q, shape, self.max_rows);
        let mut seen = HashSet::new();
        for c in &candidates {
            // No row group still to read holds a row before this one's first.
            agg.close_before(c.min_us);
            read_group(&self.archive, c, shape, &q.leaves, &mut |r| {
                if c.dedup && !seen.insert(r.seq) {
                    return Ok(());
                }
                agg.add(&r)
            })
            .await?;
        }
        Ok(agg.finish())
    }

    /// The row groups of `stream`'s files whose `ts` statistics overlap `range`.
    async fn candidates(&self, stream: u64, range: Range) -> Result<Vec<Candidate>, Problem> {
        let first = date_of(range.start_us);
        let last = date_of(range.end_us - 1);
        let files: Vec<ArchiveFile> = self
            .archive
            .list(&format!("stream={stream}"))
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|f| {
                f.place().is_some_and(|(_, d, name)| {
                    !(first.is_some_and(|f| d < f) || last.is_some_and(|l| d > l))
                        && partition_of(name, &self.topic).is_some()
                })
            })
            .collect();
        // Footers are small: fetch a few at a time, which matters on an object store.
        let footers: Vec<(ArchiveFile, Option<ArrowReaderMetadata>)> = futures::stream::iter(files)
            .map(|f| async move {
                match self.archive.metadata(&f).await {
                    Ok(m) => Ok((f, Some(m))),
                    // Compaction removed it since the listing; its rows are in the merged file.
                    Err(thingtotal_common::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok((f, None))
                    }
                    Err(e) => Err(failed(e)),
                }
            })
            .buffered(8)
            .try_collect()
            .await?;
        let footers: Vec<(ArchiveFile, ArrowReaderMetadata)> = footers
            .into_iter()
            .filter_map(|(f, meta)| Some((f, meta?)))
            .collect();
        let overlapping = self.overlapping(&footers);
        let mut out = Vec::new();
        for (f, meta) in footers {
            let Some(ts) = meta.schema().index_of("ts").ok() else {
                continue;
            };
            let dedup = overlapping.contains(&group_of(&f, &self.topic));
            let file = Arc::new((f, meta));
            for (i, rg) in file.1.metadata().row_groups().iter().enumerate() {
                let (min_us, max_us) = match rg.column(ts).statistics() {
                    Some(Statistics::Int64(s)) => (
                        s.min_opt().copied().unwrap_or(i64::MIN),
                        s.max_opt().copied().unwrap_or(i64::MAX),
                    ),
                    _ => (i64::MIN, i64::MAX),
                };
                if max_us < range.start_us || min_us >= range.end_us {
                    continue;
                }
                out.push(Candidate {
                    file: file.clone(),
                    row_group: i,
                    min_us,
                    max_us,
                    rows: usize::try_from(rg.num_rows()).unwrap_or_default(),
                    dedup,
                });
            }
        }
        Ok(out)
    }

    /// The (partition, date) groups whose files' offset ranges overlap (or are not known):
    /// a compaction was under way when they were listed, and a row may be in two files.
    fn overlapping(&self, files: &[(ArchiveFile, ArrowReaderMetadata)]) -> HashSet<Group> {
        let mut ranges: Vec<(Group, Option<(i64, i64)>)> = files
            .iter()
            .map(|(f, meta)| {
                let kv = meta.metadata().file_metadata().key_value_metadata();
                let offset = |key: &str| {
                    kv?.iter()
                        .find(|kv| kv.key == key)?
                        .value
                        .as_deref()?
                        .parse::<i64>()
                        .ok()
                };
                let range = offset(FIRST_OFFSET).zip(offset(LAST_OFFSET));
                (group_of(f, &self.topic), range)
            })
            .collect();
        ranges.sort_by_key(|(group, range)| (*group, range.map(|r| r.0)));
        let mut out = HashSet::new();
        // The group of the file before, and the last offset its group reached so far.
        let mut last: Option<(Group, i64)> = None;
        for (group, range) in ranges {
            match (range, last) {
                (None, _) => {
                    out.insert(group);
                }
                (Some((first, end)), Some((g, reached))) if g == group => {
                    if first <= reached {
                        out.insert(group);
                    }
                    last = Some((group, reached.max(end)));
                }
                (Some((_, end)), _) => last = Some((group, end)),
            }
        }
        out
    }
}

/// A file's partition and date: an offset can only be in files of one group.
type Group = (Option<i32>, Option<NaiveDate>);

/// A file's group.
fn group_of(f: &ArchiveFile, topic: &str) -> Group {
    match f.place() {
        Some((_, date, name)) => (partition_of(name, topic), Some(date)),
        None => (None, None),
    }
}

fn date_of(us: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_micros(us).map(|t| t.date_naive())
}

/// Where a leaf's value is in a file: its column, and the path inside it for a nested leaf,
/// whose top-level property the archive keeps as JSON text.
struct LeafColumn<'a> {
    column: usize,
    nested: &'a [String],
}

/// Reads one row group, handing every row to `sink`. Only the leaves in `wanted` get values.
async fn read_group(
    archive: &Archive,
    c: &Candidate,
    shape: &Shape,
    wanted: &[usize],
    sink: &mut (dyn FnMut(Row) -> Result<(), Problem> + Send),
) -> Result<(), Problem> {
    let (file, meta) = &*c.file;
    let path = &file.path;
    let schema = meta.schema();
    let index = |name: &str| schema.index_of(name).ok();
    let (Some(entry_id), Some(seq), Some(ts)) = (index("entry_id"), index("seq"), index("ts"))
    else {
        return Ok(());
    };
    let mut columns = vec![entry_id, seq, ts];
    let mut sources: Vec<Option<LeafColumn>> = Vec::new();
    for (i, leaf) in shape.leaves.iter().enumerate() {
        let top = &leaf.path[0];
        let column_name = property_column(top);
        let source = wanted
            .contains(&i)
            .then(|| index(&column_name))
            .flatten()
            .map(|column| LeafColumn {
                column,
                nested: &leaf.path[1..],
            });
        if let Some(s) = &source {
            if !columns.contains(&s.column) {
                columns.push(s.column);
            }
        }
        sources.push(source);
    }
    let input = archive
        .reader(file)
        .await
        .map_err(|e| failed(format!("{path}: {e}")))?;
    let mask = ProjectionMask::roots(meta.parquet_schema(), columns.iter().copied());
    let mut reader = ParquetRecordBatchStreamBuilder::new_with_metadata(input, meta.clone())
        .with_row_groups(vec![c.row_group])
        .with_projection(mask)
        .build()
        .map_err(|e| failed(format!("{path}: {e}")))?;
    // The projected batch keeps the file's column order; find each column in it.
    let mut projected: Vec<usize> = columns.clone();
    projected.sort_unstable();
    let at = |column: usize| projected.binary_search(&column).expect("projected");
    while let Some(batch) = reader
        .try_next()
        .await
        .map_err(|e| failed(format!("{path}: {e}")))?
    {
        let ids = batch.column(at(entry_id)).as_string::<i32>().clone();
        let seqs = batch
            .column(at(seq))
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone();
        let tss = batch
            .column(at(ts))
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone();
        let leaf_columns: Vec<Option<(&ArrayRef, &[String])>> = sources
            .iter()
            .map(|s| s.as_ref().map(|s| (batch.column(at(s.column)), s.nested)))
            .collect();
        for row in 0..batch.num_rows() {
            let ts_us = tss.value(row);
            let seq = seqs.value(row) as u64;
            let values = leaf_columns
                .iter()
                .zip(&shape.leaves)
                .map(|(c, leaf)| {
                    let (array, nested) = (*c)?;
                    let v = value_at(array, row)?;
                    if nested.is_empty() {
                        return coerce(as_stored(array.data_type(), leaf.ty), v);
                    }
                    let parsed: Value = match v {
                        Value::String(s) => serde_json::from_str(&s).ok()?,
                        other => other,
                    };
                    let v = nested.iter().try_fold(&parsed, |v, p| v.get(p))?.clone();
                    // A nested value is as its entry carried it; only a time is normalised.
                    let ty = match (&v, leaf.ty) {
                        (Value::String(_), LeafType::Time) => LeafType::Time,
                        (Value::String(_), _) => LeafType::String,
                        _ => LeafType::Json,
                    };
                    coerce(ty, v)
                })
                .collect();
            sink(Row {
                key: point_key(ts_us, seq),
                entry_id: ids.value(row).to_owned(),
                seq,
                ts_us,
                values,
            })?;
        }
    }
    Ok(())
}

/// The type a file's column holds a leaf as: the file's own, since it was written with the
/// stream version of its rows, which may not be the current one (a string column stays a string
/// whatever the leaf is now). Text columns are read as the current type says (JSON text parsed)
/// only when that type is text too.
fn as_stored(column: &DataType, current: LeafType) -> LeafType {
    match column {
        DataType::Int64 | DataType::Int32 => LeafType::Integer,
        DataType::Float64 => LeafType::Float,
        DataType::Boolean => LeafType::Boolean,
        DataType::Timestamp(..) => LeafType::Time,
        _ if matches!(current, LeafType::String | LeafType::Json | LeafType::Time) => current,
        _ => LeafType::String,
    }
}

/// One cell as JSON: numbers, booleans, strings, timestamps as RFC 3339; null as `None`.
fn value_at(array: &ArrayRef, row: usize) -> Option<Value> {
    if array.is_null(row) {
        return None;
    }
    let any = array.as_any();
    Some(match array.data_type() {
        DataType::Int64 => Value::from(any.downcast_ref::<Int64Array>()?.value(row)),
        DataType::Int32 => Value::from(any.downcast_ref::<Int32Array>()?.value(row)),
        DataType::Float64 => float(any.downcast_ref::<Float64Array>()?.value(row)),
        DataType::Boolean => Value::Bool(any.downcast_ref::<BooleanArray>()?.value(row)),
        DataType::Utf8 => Value::String(any.downcast_ref::<StringArray>()?.value(row).to_owned()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let us = any.downcast_ref::<TimestampMicrosecondArray>()?.value(row);
            Value::String(format_time(DateTime::from_timestamp_micros(us)?))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{Agg, Range};
    use arrow::array::RecordBatch;
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    use serde_json::json;
    use thingtotal_common::stream::StreamRecord;

    const TOPIC: &str = "tt.entries.valid";
    const DAY: i64 = 86_400_000_000;
    const JAN_1: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

    fn shape() -> Shape {
        let s: StreamRecord = serde_json::from_value(json!({
            "id": 1, "name": "n", "schema": {"type": "object", "properties": {
                "t": {"type": "number"}}},
            "version": 1, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "write_key_sha256": "", "read_key_sha256": ""}))
        .unwrap();
        Shape::of(&s)
    }

    /// Writes the rows `seqs` (offset `seq - 1`, at `ts(seq)`, `t = seq`) as one file of
    /// row groups of 10, named by its first offset, in the date directory of `date_us`.
    fn write(root: &std::path::Path, date_us: i64, seqs: std::ops::Range<i64>, ts: fn(i64) -> i64) {
        let date = date_of(date_us).unwrap();
        let dir = root.join(format!("stream=1/date={date}"));
        std::fs::create_dir_all(&dir).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("entry_id", DataType::Utf8, false),
            Field::new("seq", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("t", DataType::Float64, true),
        ]));
        let seq: Vec<i64> = seqs.clone().collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    seq.iter().map(|s| s.to_string()),
                )),
                Arc::new(Int64Array::from(seq.clone())),
                Arc::new(
                    TimestampMicrosecondArray::from(seq.iter().map(|&s| ts(s)).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(
                    seq.iter().map(|&s| s as f64).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(10))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(FIRST_OFFSET.into(), (seqs.start - 1).to_string()),
                KeyValue::new(LAST_OFFSET.into(), (seqs.end - 2).to_string()),
            ]))
            .build();
        let name = thingtotal_common::archive::file_name(TOPIC, 0, seqs.start - 1);
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = ArrowWriter::try_new(file, schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn reader(root: &std::path::Path, max_rows: usize) -> ArchiveReader {
        ArchiveReader::new(Archive::Local(root.to_owned()), TOPIC, max_rows)
    }

    fn days(agg: Agg, n: i64) -> AggQuery {
        AggQuery {
            range: Range {
                start_us: JAN_1,
                end_us: JAN_1 + n * DAY,
            },
            window_us: DAY,
            agg,
            leaves: vec![0],
        }
    }

    /// One row a minute from the first of January (seq 1 at 00:01).
    fn minutes(seq: i64) -> i64 {
        JAN_1 + seq * 60_000_000
    }

    #[tokio::test]
    async fn aggregations_scan_at_most_max_rows_and_say_so_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        // 1400 minutes on the first of January, 100 on the second.
        write(dir.path(), JAN_1, 1..1401, minutes);
        write(dir.path(), JAN_1 + DAY, 1401..1501, minutes);
        let shape = shape();
        let windows = reader(dir.path(), 1500)
            .aggregate(&shape, &days(Agg::Mean, 2))
            .await
            .unwrap();
        let mean = |from: i64, to: i64| json!((from + to) as f64 / 2.0);
        assert_eq!(
            windows,
            [vec![Some(mean(1, 1439))], vec![Some(mean(1440, 1500))]]
        );
        let median = reader(dir.path(), 1500)
            .aggregate(&shape, &days(Agg::Median, 2))
            .await
            .unwrap();
        assert_eq!(median, windows);
        let e = reader(dir.path(), 1499)
            .aggregate(&shape, &days(Agg::Count, 2))
            .await
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.detail.contains("1500 rows") && e.detail.contains("at most 1499"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("--archive-read-max-rows"), "{}", e.detail);
        // A page reads row groups only until it is full.
        let page = EntriesQuery {
            range: days(Agg::Count, 2).range,
            limit: 5,
            desc: true,
            after: None,
        };
        let rows = reader(dir.path(), 20).entries(&shape, &page).await.unwrap();
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1500, 1499, 1498, 1497, 1496]);
        // Past its cursor too.
        let next = EntriesQuery {
            after: Some(rows[4].key),
            ..page
        };
        let rows = reader(dir.path(), 20).entries(&shape, &next).await.unwrap();
        assert_eq!(rows[0].seq, 1495);
    }

    #[tokio::test]
    async fn rows_of_a_compaction_in_progress_count_once() {
        let dir = tempfile::tempdir().unwrap();
        // Two files and, beside them, the file that merges them.
        write(dir.path(), JAN_1, 1..51, minutes);
        write(dir.path(), JAN_1, 51..101, minutes);
        let merged = tempfile::tempdir().unwrap();
        write(merged.path(), JAN_1, 1..101, minutes);
        let date = date_of(JAN_1).unwrap();
        let from = merged.path().join(format!("stream=1/date={date}"));
        let to = dir.path().join(format!("stream=1/date={date}"));
        let name = thingtotal_common::archive::file_name(TOPIC, 0, 0);
        std::fs::rename(from.join(&name), to.join(name.replace("+0+", "+0+9"))).unwrap();
        let shape = shape();
        let count = reader(dir.path(), 1000)
            .aggregate(&shape, &days(Agg::Count, 1))
            .await
            .unwrap();
        assert_eq!(count, [vec![Some(json!(100))]]);
        let page = EntriesQuery {
            range: days(Agg::Count, 1).range,
            limit: 1000,
            desc: false,
            after: None,
        };
        let rows = reader(dir.path(), 1000)
            .entries(&shape, &page)
            .await
            .unwrap();
        assert_eq!(rows.len(), 100);
    }

    #[test]
    fn dates_of_a_range() {
        assert_eq!(date_of(0), NaiveDate::from_ymd_opt(1970, 1, 1));
        assert_eq!(
            date_of(86_400_000_000 - 1),
            NaiveDate::from_ymd_opt(1970, 1, 1)
        );
    }
}
