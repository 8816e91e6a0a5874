//! Where the Parquet archive lives: a local directory, or an object store (`s3://bucket/prefix`).
//!
//! A local directory is written with temp file, fsync, rename and fsync of the directory, which
//! the sink does itself. An object store has no rename and needs none: one `PUT` of a whole file
//! is atomic, and the object is durable once the store acknowledged it. Both are read the same
//! way, through Parquet's async reader, so the archiver's recovery and the api's queries have one
//! code path for both.
//!
//! S3 credentials and settings come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` for an
//! S3-compatible store, `AWS_ALLOW_HTTP=true` for a plain-HTTP one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::{Error, Result};

/// The archive's location.
#[derive(Debug, Clone)]
pub enum Archive {
    /// A directory on this machine.
    Local(PathBuf),
    /// An object store and the prefix of the archive in it.
    Remote {
        /// The store (a bucket).
        store: Arc<dyn ObjectStore>,
        /// The archive's prefix inside the bucket; may be empty.
        prefix: ObjectPath,
        /// The URL it was opened from, for messages.
        url: String,
    },
}

/// The columns every archive file starts with; a property named like one of them is stored as
/// `data.<name>` (see [`crate::stream::RESERVED_NAMES`]).
pub const FIXED_COLUMNS: [&str; 5] = ["entry_id", "seq", "ts", "received_at", "stream_version"];

/// The column that holds the top-level property `name`: the same rule as InfluxDB's
/// ([`crate::stream::stored_name`]).
pub fn property_column(name: &str) -> String {
    crate::stream::stored_name(name).into_owned()
}

/// Footer key: the first offset a file holds.
pub const FIRST_OFFSET: &str = "thingtotal.first_offset";
/// Footer key: the last offset a file holds.
pub const LAST_OFFSET: &str = "thingtotal.last_offset";

/// The name of the file of `topic`'s `partition` whose first row has `first_offset`.
pub fn file_name(topic: &str, partition: i32, first_offset: i64) -> String {
    format!("{topic}+{partition}+{first_offset:020}.parquet")
}

/// The partition in an archive file name of `topic`, if it is one.
pub fn partition_of(name: &str, topic: &str) -> Option<i32> {
    let rest = name
        .strip_prefix(topic)?
        .strip_prefix('+')?
        .strip_suffix(".parquet")?;
    rest.split_once('+')?.0.parse().ok()
}

/// One file of the archive: its path relative to the archive's root (`stream=1/date=…/x.parquet`)
/// and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

impl ArchiveFile {
    /// Where its path (`stream=<id>/date=<d>/<name>`) puts it: stream, date and file name.
    pub fn place(&self) -> Option<(crate::stream::StreamId, chrono::NaiveDate, &str)> {
        let mut parts = self.path.split('/');
        let stream = parts.next()?.strip_prefix("stream=")?.parse().ok()?;
        let date =
            chrono::NaiveDate::parse_from_str(parts.next()?.strip_prefix("date=")?, "%Y-%m-%d")
                .ok()?;
        let name = parts.next()?;
        parts.next().is_none().then_some((stream, date, name))
    }
}

impl Archive {
    /// Opens `location`: a directory, `file://…`, or `s3://bucket/prefix`.
    pub fn open(location: &str) -> Result<Self> {
        if let Some(path) = location.strip_prefix("file://") {
            return Ok(Archive::Local(PathBuf::from(path)));
        }
        if !location.contains("://") {
            return Ok(Archive::Local(PathBuf::from(location)));
        }
        let url = url_parts(location)?;
        match url.0 {
            "s3" | "s3a" => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(location)
                    .build()
                    .map_err(|e| Error::Config(format!("archive {location}: {e}")))?;
                Ok(Archive::Remote {
                    store: Arc::new(store),
                    prefix: ObjectPath::from(url.2),
                    url: location.to_owned(),
                })
            }
            scheme => Err(Error::Config(format!(
                "archive {location}: {scheme}:// is not supported; use a directory or s3://bucket/prefix"
            ))),
        }
    }

    /// A description for logs and banners: the directory or the URL.
    pub fn describe(&self) -> String {
        match self {
            Archive::Local(p) => p.display().to_string(),
            Archive::Remote { url, .. } => url.clone(),
        }
    }

    /// The local directory, if it is one.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Archive::Local(p) => Some(p),
            Archive::Remote { .. } => None,
        }
    }

    fn object(prefix: &ObjectPath, rel: &str) -> ObjectPath {
        let mut parts: Vec<_> = prefix.parts().collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(Into::into));
        ObjectPath::from_iter(parts)
    }

    /// Every file below `dir` (relative, such as `stream=1` or empty for all), sorted by path.
    /// Nothing when it does not exist.
    pub async fn list(&self, dir: &str) -> Result<Vec<ArchiveFile>> {
        let mut out = match self {
            Archive::Local(root) => {
                let (root, dir) = (root.clone(), dir.to_owned());
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk(&root, &root.join(&dir), &mut out)?;
                    Ok::<_, Error>(out)
                })
                .await??
            }
            Archive::Remote { store, prefix, .. } => {
                let base = Self::object(prefix, dir);
                let strip = prefix.parts().count();
                store
                    .list(Some(&base))
                    .map_ok(|meta| ArchiveFile {
                        path: meta
                            .location
                            .parts()
                            .skip(strip)
                            .map(|p| p.as_ref().to_owned())
                            .collect::<Vec<_>>()
                            .join("/"),
                        size: meta.size,
                    })
                    .try_collect()
                    .await
                    .map_err(|e| Error::Archive(format!("listing {}: {e}", self.describe())))?
            }
        };
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// A Parquet reader of one file.
    pub async fn reader(&self, file: &ArchiveFile) -> Result<Box<dyn AsyncFileReader>> {
        match self {
            Archive::Local(root) => {
                let f = tokio::fs::File::open(root.join(&file.path)).await?;
                Ok(Box::new(f))
            }
            Archive::Remote { store, prefix, .. } => Ok(Box::new(ObjectReader {
                store: store.clone(),
                path: Self::object(prefix, &file.path),
                size: file.size,
            })),
        }
    }

    /// The footer of one file: its schema, row groups and statistics, and key-value metadata.
    pub async fn metadata(&self, file: &ArchiveFile) -> Result<ArrowReaderMetadata> {
        let mut reader = self.reader(file).await?;
        ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|e| Error::Archive(format!("{}: {e}", file.path)))
    }

    /// Stores a new file in an object store with one atomic `PUT` that never replaces an object
    /// (`If-None-Match: *`); durable once it returns. If the object exists, fails with an
    /// [`Error::is_already_exists`] error and leaves it untouched; a store that does not support
    /// conditional writes is a configuration error. Local archives write their files
    /// themselves, with fsync and a link.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        match self {
            Archive::Local(_) => Err(Error::Archive(
                "a local archive writes its files with fsync and a link".into(),
            )),
            Archive::Remote { store, prefix, .. } => {
                let (object, create) = (Self::object(prefix, rel), PutMode::Create.into());
                match store
                    .put_opts(&object, PutPayload::from(bytes), create)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e @ object_store::Error::AlreadyExists { .. }) => {
                        Err(Error::Io(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("{}/{rel}: {e}", self.describe()),
                        )))
                    }
                    Err(e @ object_store::Error::NotImplemented { .. }) => {
                        Err(Error::Config(format!(
                            "archive {}: the object store must support conditional writes \
                             (If-None-Match: *) so that no member replaces another's file: {e}",
                            self.describe()
                        )))
                    }
                    Err(e) => Err(Error::Archive(format!("{}/{rel}: {e}", self.describe()))),
                }
            }
        }
    }
}

/// Reads one object of a store with ranged `GET`s: the footer first, then only the column
/// chunks a query needs.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// (scheme, bucket, prefix) of `scheme://bucket/prefix`.
fn url_parts(url: &str) -> Result<(&str, &str, &str)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::Config(format!("archive {url}: not a URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Config(format!("archive {url}: no bucket")));
    }
    Ok((scheme, bucket, prefix.trim_matches('/')))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<ArchiveFile>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(ArchiveFile {
                path: rel
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/"),
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert!(
            matches!(Archive::open("/data/archive").unwrap(), Archive::Local(p) if p == Path::new("/data/archive"))
        );
        assert!(
            matches!(Archive::open("file:///data/a").unwrap(), Archive::Local(p) if p == Path::new("/data/a"))
        );
        assert_eq!(url_parts("s3://b/x/y/").unwrap(), ("s3", "b", "x/y"));
        assert_eq!(url_parts("s3://b").unwrap(), ("s3", "b", ""));
        assert!(url_parts("s3:///x").is_err());
        let e = Archive::open("gs://bucket/x").unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
    }

    #[tokio::test]
    async fn a_local_archive_lists_its_files_relative_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open(dir.path().to_str().unwrap()).unwrap();
        assert!(a.list("stream=1").await.unwrap().is_empty());
        for p in [
            "stream=1/date=2026-01-02/b.parquet",
            "stream=1/date=2026-01-01/a.parquet",
            "stream=2/date=2026-01-01/c.parquet",
        ] {
            std::fs::create_dir_all(dir.path().join(p).parent().unwrap()).unwrap();
            std::fs::write(dir.path().join(p), b"1234").unwrap();
        }
        let files = a.list("stream=1").await.unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "stream=1/date=2026-01-01/a.parquet",
                "stream=1/date=2026-01-02/b.parquet"
            ]
        );
        assert_eq!(files[0].size, 4);
        assert_eq!(a.list("").await.unwrap().len(), 3);
    }
}
