//! Compaction: merging the small files of one (stream, date) into files of the target size,
//! without breaking exactly-once.
//!
//! Files are merged only within one Kafka partition and stream version, in offset order, and
//! never when their offset ranges overlap (the duplicates of two writers, which reads find by
//! the overlap and a merge would hide), so a merged file holds every offset of its (partition,
//! stream, date) between its first and last, as the archiver's crash recovery expects; it takes
//! the first input's name, so names keep telling the archiver where each partition stands. A
//! merge is made safe by an intent file:
//!
//! 1. the merged file is written under a temporary name and fsynced;
//! 2. `_compaction.json` records the output and the inputs, and is fsynced;
//! 3. the merged file is renamed over the first input (atomic), and the directory fsynced;
//! 4. the other inputs are removed, then the intent.
//!
//! A crash before 3 leaves the inputs whole: the temporary file and the intent are removed. A
//! crash after 3 leaves the merged file and some inputs: the inputs it replaced are removed.
//! Either way the next compaction (or `thingtotal compact`) finishes the job first. Whether 3
//! happened is read from the output itself: the merged file's footer carries an id that the
//! intent records. The temporary file's absence proves nothing, as the archiver's start-up
//! recovery removes temporary files older than ten minutes, a crashed compaction's included. An
//! intent that a crash cut short was never followed by a rename (it is fsynced first), so it
//! is removed and the inputs stand.

use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};
use thingtotal_common::{Error, Result};
use tracing::{info, warn};

use thingtotal_common::archive::{file_name, partition_of};

use crate::archive::{FIRST_OFFSET, LAST_OFFSET};
use crate::durable::{rename_into_place, sync_dir, temporary, write_synced};

const INTENT: &str = "_compaction.json";

/// The footer key of a merged file's id, which its intent records.
const COMPACTION_ID: &str = "thingtotal.compaction";

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    tmp: String,
    output: String,
    inputs: Vec<String>,
    /// The id in the merged file's footer: the rename happened if and only if `output`
    /// carries it. Absent in intents written before the id was.
    #[serde(default)]
    id: Option<String>,
}

/// Where a crash is simulated (tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    IntentWritten,
    Renamed,
}

#[derive(Debug, Clone)]
struct FileInfo {
    path: PathBuf,
    partition: i32,
    first: i64,
    last: i64,
    rows: i64,
    metadata: Vec<KeyValue>,
}

fn footer(path: &Path) -> Result<(i64, Vec<KeyValue>)> {
    let file = std::fs::File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Archive(e.to_string()))?;
    let meta = builder.metadata().file_metadata();
    Ok((
        meta.num_rows(),
        meta.key_value_metadata().cloned().unwrap_or_default(),
    ))
}

fn value<'a>(kv: &'a [KeyValue], key: &str) -> Option<&'a str> {
    kv.iter()
        .find(|e| e.key == key)
        .and_then(|e| e.value.as_deref())
}

fn offset(kv: &[KeyValue], key: &str) -> Option<i64> {
    value(kv, key).and_then(|v| v.parse().ok())
}

/// Whether the merge that `intent` records was renamed over its output (step 3).
fn renamed(dir: &Path, intent: &Intent) -> bool {
    let Ok((_, output)) = footer(&dir.join(&intent.output)) else {
        // No readable output: the inputs are the truth.
        return false;
    };
    match &intent.id {
        Some(id) => value(&output, COMPACTION_ID) == Some(id.as_str()),
        // An intent from before the id: the output is the merge if its offsets reach every
        // other input's (the inputs' ranges are disjoint and in order).
        None => offset(&output, LAST_OFFSET).is_some_and(|last| {
            let others = intent.inputs.iter().filter(|i| **i != intent.output);
            others.into_iter().all(|i| {
                footer(&dir.join(i)).map_or(true, |(_, kv)| {
                    offset(&kv, FIRST_OFFSET).is_some_and(|first| first <= last)
                })
            })
        }),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Finishes a merge that a crash interrupted.
fn finish_intent(dir: &Path) -> Result<()> {
    let intent_path = dir.join(INTENT);
    let Ok(text) = std::fs::read_to_string(&intent_path) else {
        return Ok(());
    };
    let intent: Intent = match serde_json::from_str(&text) {
        Ok(intent) => intent,
        Err(e) => {
            // A crash while the intent was written (step 2): it is fsynced before the rename,
            // so nothing was renamed and the inputs are whole. The archiver's recovery removes
            // the temporary file.
            warn!(dir = %dir.display(), error = %e, "removing an unfinished compaction intent");
            std::fs::remove_file(&intent_path)?;
            return sync_dir(&intent_path);
        }
    };
    let tmp = dir.join(&intent.tmp);
    if renamed(dir, &intent) {
        for input in intent.inputs.iter().filter(|i| **i != intent.output) {
            remove_if_present(&dir.join(input))?;
        }
    } else {
        // Not renamed: the inputs are whole. The temporary file may be gone already.
        remove_if_present(&tmp)?;
    }
    sync_dir(&tmp)?;
    std::fs::remove_file(&intent_path)?;
    sync_dir(&intent_path)?;
    info!(dir = %dir.display(), "finished an interrupted compaction");
    Ok(())
}

/// Compacts one `stream=…/date=…` directory; returns (files before, files after).
pub(crate) fn compact_dir(
    dir: &Path,
    topic: &str,
    target_rows: i64,
    crash: Option<Step>,
) -> Result<(usize, usize)> {
    finish_intent(dir)?;
    let mut files = Vec::new();
    for f in std::fs::read_dir(dir)?.flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        let Some(partition) = partition_of(&name, topic) else {
            continue;
        };
        let (rows, metadata) = match footer(&f.path()) {
            Ok(x) => x,
            Err(e) => {
                warn!(path = %f.path().display(), error = %e, "not compacting an unreadable file");
                continue;
            }
        };
        let offset = |k| value(&metadata, k).and_then(|v| v.parse::<i64>().ok());
        let (Some(first), Some(last)) = (offset(FIRST_OFFSET), offset(LAST_OFFSET)) else {
            continue;
        };
        files.push(FileInfo {
            path: f.path(),
            partition,
            first,
            last,
            rows,
            metadata,
        });
    }
    let before = files.len();
    files.sort_by_key(|f| (f.partition, f.first));
    let mut after = before;
    let mut run: Vec<FileInfo> = Vec::new();
    let merge = |run: &mut Vec<FileInfo>, after: &mut usize| -> Result<()> {
        if run.len() > 1 {
            merge_run(dir, topic, run, crash)?;
            *after -= run.len() - 1;
        }
        run.clear();
        Ok(())
    };
    for f in files {
        let fits = run.last().is_some_and(|l: &FileInfo| {
            l.partition == f.partition
                && f.first > run.iter().map(|r| r.last).max().unwrap_or(l.last)
                && value(&l.metadata, "thingtotal.stream_version")
                    == value(&f.metadata, "thingtotal.stream_version")
                && value(&l.metadata, "thingtotal.schema")
                    == value(&f.metadata, "thingtotal.schema")
                && run.iter().map(|r| r.rows).sum::<i64>() + f.rows <= target_rows
        });
        if !fits {
            merge(&mut run, &mut after)?;
        }
        run.push(f);
    }
    merge(&mut run, &mut after)?;
    Ok((before, after))
}

fn merge_run(dir: &Path, topic: &str, run: &[FileInfo], crash: Option<Step>) -> Result<()> {
    let storage = |e: parquet::errors::ParquetError| Error::Archive(e.to_string());
    let output = dir.join(file_name(topic, run[0].partition, run[0].first));
    let tmp = temporary(&output, "compact");
    let first = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&run[0].path)?)
        .map_err(storage)?;
    let schema = first.schema().clone();
    let mut readers = Vec::new();
    for f in run {
        let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f.path)?)
            .map_err(storage)?;
        if b.schema().fields() != schema.fields() {
            warn!(path = %f.path.display(), "not merging files whose columns differ");
            return Ok(());
        }
        readers.push(b.with_batch_size(64 * 1024).build().map_err(storage)?);
    }
    let mut metadata = run[0].metadata.clone();
    for kv in &mut metadata {
        if kv.key == LAST_OFFSET {
            kv.value = Some(run[run.len() - 1].last.to_string());
        }
    }
    // The first input may be an earlier merge, with an id of its own.
    let id = uuid::Uuid::now_v7().to_string();
    metadata.retain(|kv| kv.key != COMPACTION_ID);
    metadata.push(KeyValue::new(COMPACTION_ID.to_owned(), id.clone()));
    let batches = readers
        .into_iter()
        .flatten()
        .map(|b| b.map_err(|e| Error::Archive(e.to_string())));
    write_synced(&tmp, schema, metadata, batches)?;
    let name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let intent = Intent {
        tmp: name(&tmp),
        output: name(&output),
        inputs: run.iter().map(|f| name(&f.path)).collect(),
        id: Some(id),
    };
    let intent_path = dir.join(INTENT);
    std::fs::write(&intent_path, serde_json::to_vec(&intent)?)?;
    std::fs::File::open(&intent_path)?.sync_all()?;
    sync_dir(&intent_path)?;
    if crash == Some(Step::IntentWritten) {
        return Err(std::io::Error::other("simulated crash after the intent").into());
    }
    rename_into_place(&tmp, &output)?;
    if crash == Some(Step::Renamed) {
        return Err(std::io::Error::other("simulated crash after the rename").into());
    }
    finish_intent(dir)?;
    info!(output = %output.display(), inputs = run.len(), rows = run.iter().map(|f| f.rows).sum::<i64>(), "compacted");
    Ok(())
}

/// The lock that keeps two compactions (the sink's periodic one, `thingtotal compact`, another
/// sink process on the same directory) from working on one archive at once.
const LOCK: &str = ".compaction.lock";

/// Compacts `root` as [`compact`] does, holding the archive's compaction lock. `None` when
/// another compaction holds it.
pub fn compact_locked(
    root: &Path,
    topic: &str,
    target_rows: i64,
) -> Result<Option<(usize, usize)>> {
    std::fs::create_dir_all(root)?;
    let lock = std::fs::File::create(root.join(LOCK))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
    }
    // The lock goes with the file handle, at the end of this function.
    compact(root, topic, target_rows).map(Some)
}

/// Compacts `root` every `every` until `shutdown`: the sink's periodic compaction.
pub(crate) async fn every(
    root: PathBuf,
    topic: String,
    target_rows: i64,
    every: std::time::Duration,
    shutdown: thingtotal_common::CancellationToken,
) -> Result<()> {
    info!(root = %root.display(), every = ?every, "periodic compaction");
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let (r, t) = (root.clone(), topic.clone());
        match tokio::task::spawn_blocking(move || compact_locked(&r, &t, target_rows)).await {
            Ok(Ok(Some((before, after)))) => {
                crate::telemetry::compacted(before.saturating_sub(after));
                if before != after {
                    info!(before, after, "compacted the archive");
                }
            }
            Ok(Ok(None)) => info!("another compaction holds the archive; skipping this round"),
            // A failed round leaves the archive correct (see the module's notes); retry later.
            Ok(Err(e)) => warn!(error = %e, "compaction failed; trying again next round"),
            Err(e) => warn!(error = %e, "compaction task failed; trying again next round"),
        }
    }
}

/// Compacts every `stream=…/date=…` directory under `root`; returns (files before, after).
pub fn compact(root: &Path, topic: &str, target_rows: i64) -> Result<(usize, usize)> {
    let mut total = (0, 0);
    for s in std::fs::read_dir(root)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("stream="))
    {
        for d in std::fs::read_dir(s.path())?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("date="))
        {
            let (b, a) = compact_dir(&d.path(), topic, target_rows, None)?;
            total.0 += b;
            total.1 += a;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Columns;
    use crate::durable::write_local;
    use crate::testing::{envelope, stream, TOPIC};

    /// `files` files of `rows` rows each, at consecutive offsets (every other offset, as if
    /// another stream shared the partition).
    fn archive(dir: &Path, files: i64, rows: i64) {
        for f in 0..files {
            let offsets: Vec<i64> = (0..rows).map(|r| 2 * (f * rows + r)).collect();
            archive_file(dir, &offsets);
        }
    }

    /// One archive file of the rows at `offsets`, named after the first.
    fn archive_file(dir: &Path, offsets: &[i64]) {
        let columns = Columns::of(&stream());
        let envelopes: Vec<bytes::Bytes> = offsets.iter().map(|o| envelope(*o)).collect();
        let path = dir.join(file_name(TOPIC, 0, offsets[0]));
        let kv = |k: &str, v: String| KeyValue::new(k.to_owned(), v);
        let meta = vec![
            kv(FIRST_OFFSET, offsets[0].to_string()),
            kv(LAST_OFFSET, offsets[offsets.len() - 1].to_string()),
            kv("thingtotal.stream_version", "1".into()),
            kv("thingtotal.schema", stream().schema.to_string()),
        ];
        let batch = columns
            .decode(&envelopes)
            .map(|(batch, _)| batch)
            .map_err(|e| Error::Archive(e.to_string()));
        write_local(&path, columns.schema(), meta, std::iter::once(batch)).unwrap();
    }

    /// Every row's seq, sorted, and the number of Parquet files.
    fn contents(dir: &Path) -> (Vec<i64>, usize) {
        let mut seqs = Vec::new();
        let mut files = 0;
        for f in std::fs::read_dir(dir).unwrap().flatten() {
            if !f.file_name().to_string_lossy().ends_with(".parquet") {
                continue;
            }
            files += 1;
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f.path()).unwrap())
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let col = batch.column_by_name("seq").unwrap();
                let seq = col
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap();
                seqs.extend(seq.values().iter().copied());
            }
        }
        seqs.sort();
        (seqs, files)
    }

    #[test]
    fn one_compaction_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = std::fs::File::create(dir.path().join(LOCK)).unwrap();
        held.lock().unwrap();
        assert_eq!(compact_locked(dir.path(), TOPIC, 10).unwrap(), None);
        drop(held);
        assert_eq!(compact_locked(dir.path(), TOPIC, 10).unwrap(), Some((0, 0)));
    }

    #[test]
    fn small_files_merge_into_target_sized_ones_with_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 10, 100);
        let (rows, files) = contents(dir.path());
        assert_eq!((rows.len(), files), (1000, 10));
        assert_eq!(compact_dir(dir.path(), TOPIC, 450, None).unwrap(), (10, 3));
        assert_eq!(contents(dir.path()), (rows, 3));
        // The merged files keep the names and offset ranges the archiver recovers from.
        let first = dir.path().join(file_name(TOPIC, 0, 0));
        let (n, kv) = footer(&first).unwrap();
        assert_eq!(n, 400);
        assert_eq!(value(&kv, LAST_OFFSET), Some("798"));
        assert!(dir.path().join(file_name(TOPIC, 0, 800)).exists());
        assert!(dir.path().join(file_name(TOPIC, 0, 1600)).exists());
    }

    #[test]
    fn a_crash_at_any_step_leaves_the_archive_correct() {
        for step in [Step::IntentWritten, Step::Renamed] {
            let dir = tempfile::tempdir().unwrap();
            archive(dir.path(), 4, 50);
            let (rows, _) = contents(dir.path());
            assert!(compact_dir(dir.path(), TOPIC, 1000, Some(step)).is_err());
            if step == Step::IntentWritten {
                assert_eq!(
                    contents(dir.path()),
                    (rows.clone(), 4),
                    "inputs whole before the rename"
                );
            }
            // The next run finishes the interrupted merge first.
            assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap().1, 1);
            assert_eq!(contents(dir.path()), (rows, 1), "{step:?}");
            assert!(!dir.path().join(INTENT).exists());
            let leftovers: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|f| f.file_name().to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty());
        }
    }

    /// Files whose offset ranges overlap (two writers of one partition, which the archive's
    /// create-only files leave possible only around a compaction) are not merged: a merge
    /// would hide the duplicates from the reads, which look for overlapping files.
    #[test]
    fn files_whose_offsets_overlap_are_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        archive_file(dir.path(), &(0..100).collect::<Vec<_>>());
        archive_file(dir.path(), &(50..150).collect::<Vec<_>>());
        archive_file(dir.path(), &(150..200).collect::<Vec<_>>());
        let before = contents(dir.path());
        assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap(), (3, 2));
        assert_eq!(contents(dir.path()), (before.0, 2));
        let (_, kv) = footer(&dir.path().join(file_name(TOPIC, 0, 50))).unwrap();
        assert_eq!(value(&kv, LAST_OFFSET), Some("199"));
    }

    #[test]
    fn an_intent_cut_short_by_a_crash_leaves_the_inputs_whole() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 4, 50);
        let (rows, _) = contents(dir.path());
        assert!(compact_dir(dir.path(), TOPIC, 1000, Some(Step::IntentWritten)).is_err());
        let intent_path = dir.path().join(INTENT);
        let text = std::fs::read(&intent_path).unwrap();
        std::fs::write(&intent_path, &text[..text.len() / 2]).unwrap();
        assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap().1, 1);
        assert_eq!(contents(dir.path()), (rows, 1));
        assert!(!intent_path.exists());
    }

    /// A crash after the intent, then a restart late enough for the archiver's recovery to
    /// remove the merge's temporary file before the next compaction.
    fn crash_then_lose_the_temporary_file(dir: &Path) {
        assert!(compact_dir(dir, TOPIC, 1000, Some(Step::IntentWritten)).is_err());
        let tmp = temporary(&dir.join(file_name(TOPIC, 0, 0)), "compact");
        std::fs::remove_file(&tmp).unwrap();
    }

    #[test]
    fn a_late_restart_after_a_crash_before_the_rename_loses_no_row() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 4, 50);
        let (rows, _) = contents(dir.path());
        crash_then_lose_the_temporary_file(dir.path());
        assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap().1, 1);
        assert_eq!(contents(dir.path()), (rows, 1), "every row, merged once");
        assert!(!dir.path().join(INTENT).exists());
    }

    /// Makes the intent in `dir` one written before intents recorded the merge's id.
    fn forget_the_merge_id(dir: &Path) {
        let intent_path = dir.join(INTENT);
        let mut intent: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&intent_path).unwrap()).unwrap();
        intent.as_object_mut().unwrap().remove("id");
        std::fs::write(&intent_path, intent.to_string()).unwrap();
    }

    #[test]
    fn an_intent_written_before_the_merge_id_is_finished_from_the_offsets() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 4, 50);
        let (rows, _) = contents(dir.path());
        crash_then_lose_the_temporary_file(dir.path());
        forget_the_merge_id(dir.path());
        assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap().1, 1);
        assert_eq!(contents(dir.path()), (rows.clone(), 1));
        // And once renamed, the old intent removes the inputs the merge replaced.
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 4, 50);
        assert!(compact_dir(dir.path(), TOPIC, 1000, Some(Step::Renamed)).is_err());
        forget_the_merge_id(dir.path());
        assert_eq!(compact_dir(dir.path(), TOPIC, 1000, None).unwrap().1, 1);
        assert_eq!(contents(dir.path()), (rows, 1));
    }
}
