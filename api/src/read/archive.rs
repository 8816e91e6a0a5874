//! Reads from the Parquet archive itself, the files the sink wrote:
//! `<archive>/stream=<id>/date=<YYYY-MM-DD>/<topic>+<partition>+<offset>.parquet`.
//!
//! A query never reads the whole archive. It lists only its stream's directory and the `date=`
//! directories its range touches, opens only the footers of those files, skips every row group
//! whose `ts` statistics fall outside the range, and reads only the columns it needs. A page of
//! entries reads row groups in time order and stops as soon as no further row group can hold an
//! entry of the page.
//!
//! Compaction replaces small files with a merged one; a reader that lists the directory in the
//! middle of it can see both, so rows are deduplicated by `seq`, which is unique in a stream.

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
use thingtotal_common::archive::{partition_of, property_column, Archive, ArchiveFile};
use thingtotal_common::envelope::format_time;
use thingtotal_common::problem::Problem;

use super::shape::{coerce, float, Shape};
use super::{point_key, EntriesQuery, Range, Row};

/// The Parquet archive as a read backend.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveReader {
    archive: Archive,
    /// File names start with `<topic>+`.
    topic: String,
}

/// A row group that may hold entries of the range.
#[derive(Debug, Clone)]
struct Candidate {
    file: Arc<(ArchiveFile, ArrowReaderMetadata)>,
    row_group: usize,
    min_us: i64,
    max_us: i64,
}

fn failed(e: impl std::fmt::Display) -> Problem {
    tracing::warn!(error = %e, "reading the archive failed");
    Problem::unavailable(format!("the archive could not be read: {e}"))
}

impl ArchiveReader {
    pub(crate) fn new(archive: Archive, valid_topic: &str) -> Self {
        Self {
            archive,
            topic: valid_topic.to_owned(),
        }
    }

    /// A page of entries, in the query's order.
    pub(crate) async fn entries(
        &self,
        shape: &Shape,
        q: &EntriesQuery,
    ) -> Result<Vec<Row>, Problem> {
        let mut candidates = self.candidates(shape.stream_id, q.range).await?;
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
            read_group(&self.archive, c, shape, &all, &mut |r| {
                if q.range.contains(r.ts_us) && q.past_cursor(r.key) && seen.insert(r.seq) {
                    rows.push(r);
                }
            })
            .await?;
        }
        order(&mut rows);
        Ok(rows)
    }

    /// Every entry in `range`, with the values of `leaves` only (the rest are `None`).
    pub(crate) async fn rows(
        &self,
        shape: &Shape,
        range: Range,
        leaves: &[usize],
    ) -> Result<Vec<Row>, Problem> {
        let mut seen = HashSet::new();
        let mut rows = Vec::new();
        for c in self.candidates(shape.stream_id, range).await? {
            read_group(&self.archive, &c, shape, leaves, &mut |r| {
                if range.contains(r.ts_us) && seen.insert(r.seq) {
                    rows.push(r);
                }
            })
            .await?;
        }
        Ok(rows)
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
        let mut out = Vec::new();
        for (f, meta) in footers {
            let Some(meta) = meta else { continue };
            let Some(ts) = meta.schema().index_of("ts").ok() else {
                continue;
            };
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
                });
            }
        }
        Ok(out)
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
    sink: &mut (dyn FnMut(Row) + Send),
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
                    let v = if nested.is_empty() {
                        v
                    } else {
                        let parsed: Value = match v {
                            Value::String(s) => serde_json::from_str(&s).ok()?,
                            other => other,
                        };
                        nested.iter().try_fold(&parsed, |v, p| v.get(p))?.clone()
                    };
                    coerce(leaf.ty, v)
                })
                .collect();
            sink(Row {
                key: point_key(ts_us, seq),
                entry_id: ids.value(row).to_owned(),
                seq,
                ts_us,
                values,
            });
        }
    }
    Ok(())
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

    #[test]
    fn dates_of_a_range() {
        assert_eq!(date_of(0), NaiveDate::from_ymd_opt(1970, 1, 1));
        assert_eq!(
            date_of(86_400_000_000 - 1),
            NaiveDate::from_ymd_opt(1970, 1, 1)
        );
    }
}
