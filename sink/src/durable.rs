//! Durable files: how the archiver and compaction put a Parquet file in place so that a crash
//! leaves either the whole file or none of it.
//!
//! A file is encoded under a temporary name that readers never match (it does not end in
//! `.parquet`), fsynced, put into place, and its directory fsynced so that the new name itself
//! survives a crash. The archiver's new files are linked into place, which fails if the name
//! exists: a member that lost its partitions while it wrote (or anyone else) can never replace
//! a file another member published. Compaction renames its merge over its first input, which
//! it must replace.

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use thingtotal_common::{Error, Result};

/// The temporary name a file is written under before it is renamed into place. It does not end
/// in `.parquet`, so readers globbing the archive never see a half-written file.
pub(crate) fn temporary(path: &Path, what: &str) -> PathBuf {
    let dir = path.parent().expect("archive files have a directory");
    dir.join(format!(
        ".{}.{what}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Writes `batches` as a zstd Parquet file at `tmp` and fsyncs it.
pub(crate) fn write_synced(
    tmp: &Path,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<()> {
    if let Some(dir) = tmp.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::File::create(tmp)?;
    encode(file, schema, metadata, batches)?.sync_all()?;
    Ok(())
}

/// Encodes `batches` as a zstd Parquet file into `out`.
pub(crate) fn encode<W: std::io::Write + Send>(
    out: W,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<W> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_key_value_metadata(Some(metadata))
        .build();
    let storage = |e: parquet::errors::ParquetError| Error::Archive(e.to_string());
    let mut writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(storage)?;
    for batch in batches {
        writer.write(&batch?).map_err(storage)?;
    }
    writer.into_inner().map_err(storage)
}

/// Renames `tmp` to `path` (replacing it atomically if it exists) and fsyncs the directory.
pub(crate) fn rename_into_place(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path)?;
    sync_dir(path)
}

/// Fsyncs the directory of `path`, so that a rename or removal in it is durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().expect("archive files have a directory");
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Puts `tmp` at `path` unless `path` exists, then fsyncs the directory. If it exists, fails
/// with [`std::io::ErrorKind::AlreadyExists`] and leaves it untouched. `tmp` is removed either
/// way. A hard link is the file system's create-if-absent for a whole file (the file systems
/// a local archive lives on, ext4, XFS, btrfs, ZFS, all have them).
pub(crate) fn link_into_place(tmp: &Path, path: &Path) -> Result<()> {
    let linked = std::fs::hard_link(tmp, path);
    // A temporary file left by a crash here is removed by recovery after ten minutes.
    let _ = std::fs::remove_file(tmp);
    linked?;
    sync_dir(path)
}

/// Writes one new file of a local archive atomically: a temporary name of this writer's own
/// (two members may write the same file at once), fsync, link, fsync of the directory. Fails
/// with [`std::io::ErrorKind::AlreadyExists`] if the file exists.
pub(crate) fn write_local(
    path: &Path,
    schema: arrow::datatypes::SchemaRef,
    metadata: Vec<KeyValue>,
    batches: impl Iterator<Item = Result<arrow::record_batch::RecordBatch>>,
) -> Result<()> {
    let tmp = temporary(path, &format!("write.{}", uuid::Uuid::now_v7().simple()));
    write_synced(&tmp, schema, metadata, batches)?;
    link_into_place(&tmp, path)
}
