//! Crash recovery: which offsets the archive already holds, read back from the files' footers.
//!
//! Every file's footer records the first and last offset of `entries.valid` it holds. A stream's
//! entries of one date and partition go to one file at a time, in offset order, so every offset
//! between a file's first and last of that (partition, stream, date) is in that file, and a
//! restarted archiver skips exactly those.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use thingtotal_common::archive::{partition_of, Archive};
use thingtotal_common::stream::StreamId;
use thingtotal_common::Result;
use tracing::warn;

pub(crate) use thingtotal_common::archive::{FIRST_OFFSET, LAST_OFFSET};

/// How old a temporary file must be before recovery takes it for a crash's leftover; a live
/// writer's temporary file is seconds old.
const STALE_TEMPORARY: Duration = Duration::from_secs(600);

/// Offsets already archived, per (partition, stream, date): first offset → last offset.
pub(crate) type Archived = HashMap<(i32, StreamId, NaiveDate), BTreeMap<i64, i64>>;

/// Reads every archived file of `topic` and the offsets its footer says it holds; in a local
/// archive, removes temporary files a crash left behind.
pub(crate) async fn recover(archive: &Archive, topic: &str) -> Result<Archived> {
    let mut archived = Archived::new();
    for f in archive.list("").await? {
        let Some((stream, date, name)) = f.place() else {
            continue;
        };
        if name.ends_with(".tmp") {
            if let Some(root) = archive.local() {
                remove_if_stale(&root.join(&f.path));
            }
            continue;
        }
        let Some(partition) = partition_of(name, topic) else {
            continue;
        };
        let meta = match archive.metadata(&f).await {
            Ok(m) => m,
            Err(e) => {
                // Not ours to judge: skip it rather than refuse to start.
                warn!(path = %f.path, error = %e, "skipping an unreadable archive file");
                continue;
            }
        };
        let kv = meta
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let get = |k: &str| {
            kv.iter()
                .find(|e| e.key == k)
                .and_then(|e| e.value.as_deref()?.parse::<i64>().ok())
        };
        if let (Some(first), Some(last)) = (get(FIRST_OFFSET), get(LAST_OFFSET)) {
            archived
                .entry((partition, stream, date))
                .or_default()
                .insert(first, last);
        }
    }
    Ok(archived)
}

/// Removes a temporary file a crash left.
fn remove_if_stale(path: &Path) {
    let stale = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TEMPORARY));
    if stale {
        let _ = std::fs::remove_file(path);
    }
}

/// Whether `offset` of `partition` is in an archived file of `stream` and `date`.
pub(crate) fn is_archived(
    archived: &Archived,
    (partition, stream, date): (i32, StreamId, NaiveDate),
    offset: i64,
) -> bool {
    archived
        .get(&(partition, stream, date))
        .and_then(|ranges| ranges.range(..=offset).next_back())
        .is_some_and(|(_, last)| offset <= *last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingtotal_common::archive::file_name;

    #[test]
    fn names_are_deterministic_and_sort_by_offset() {
        let name = file_name("tt.entries.valid", 3, 42);
        assert_eq!(partition_of(&name, "tt.entries.valid"), Some(3));
        assert_eq!(partition_of(&name, "tt.entries"), None);
        assert_eq!(
            partition_of(
                ".tt.entries.valid+3+1.parquet.write.tmp",
                "tt.entries.valid"
            ),
            None
        );
        assert_eq!(
            file_name("tt.entries.valid", 3, 42),
            "tt.entries.valid+3+00000000000000000042.parquet"
        );
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        let mut a = Archived::new();
        a.entry((1, 7, day(1))).or_default().insert(10, 20);
        a.entry((1, 7, day(1))).or_default().insert(30, 35);
        let k = (1, 7, day(1));
        assert!(is_archived(&a, k, 10) && is_archived(&a, k, 20) && is_archived(&a, k, 33));
        assert!(!is_archived(&a, k, 9) && !is_archived(&a, k, 21) && !is_archived(&a, k, 36));
        assert!(!is_archived(&a, (2, 7, day(1)), 15) && !is_archived(&a, (1, 8, day(1)), 15));
        // Another date's file of the same stream and partition can interleave its offsets.
        assert!(!is_archived(&a, (1, 7, day(2)), 15));
    }
}
