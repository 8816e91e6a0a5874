//! Writing one open file: its rows decoded into Arrow columns a chunk at a time, encoded as
//! Parquet with the footer that crash recovery reads, and put in place atomically.

use parquet::file::metadata::KeyValue;
use thingtotal_common::archive::Archive;
use thingtotal_common::{Error, Result};
use tracing::warn;

use super::files::{FileKey, OpenFile};
use super::recover::{FIRST_OFFSET, LAST_OFFSET};
use crate::columns::Columns;
use crate::durable::{encode, write_local};

/// Envelopes decoded into one record batch at a time while a file is written.
const DECODE_CHUNK: usize = 16 * 1024;

/// The footer of `file`: the offsets it holds, its stream, version and schema.
pub(super) fn footer(key: &FileKey, file: &OpenFile, schema_json: String) -> Vec<KeyValue> {
    vec![
        KeyValue::new(FIRST_OFFSET.to_owned(), file.first_offset.to_string()),
        KeyValue::new(LAST_OFFSET.to_owned(), file.last_offset.to_string()),
        KeyValue::new("thingtotal.stream_id".to_owned(), key.stream.to_string()),
        KeyValue::new(
            "thingtotal.stream_version".to_owned(),
            file.version.to_string(),
        ),
        KeyValue::new("thingtotal.schema".to_owned(), schema_json),
    ]
}

/// The record batches of the envelopes `rows`, decoded chunk by chunk straight into columns. A
/// record that is not an envelope is skipped with a warning, as anything on `entries.valid`
/// that is not an envelope is.
fn batches<'a>(
    columns: &'a Columns,
    rows: &'a [bytes::Bytes],
) -> impl Iterator<Item = Result<arrow::record_batch::RecordBatch>> + 'a {
    rows.chunks(DECODE_CHUNK).map(|chunk| {
        let (batch, skipped) = columns
            .decode(chunk)
            .map_err(|e| Error::Archive(e.to_string()))?;
        if skipped > 0 {
            warn!(skipped, "skipping records that are not valid envelopes");
        }
        Ok(batch)
    })
}

/// Writes one file at `rel`: in a directory with a temporary name, fsync and rename, in an
/// object store with one `PUT` of the whole file.
pub(super) async fn write_file(
    archive: &Archive,
    rel: String,
    columns: Columns,
    rows: Vec<bytes::Bytes>,
    metadata: Vec<KeyValue>,
) -> Result<()> {
    match archive {
        Archive::Local(root) => {
            let path = root.join(&rel);
            tokio::task::spawn_blocking(move || {
                write_local(&path, columns.schema(), metadata, batches(&columns, &rows))
            })
            .await?
        }
        Archive::Remote { .. } => {
            let bytes = tokio::task::spawn_blocking(move || {
                encode(
                    Vec::new(),
                    columns.schema(),
                    metadata,
                    batches(&columns, &rows),
                )
            })
            .await??;
            archive.put(&rel, bytes.into()).await
        }
    }
}
