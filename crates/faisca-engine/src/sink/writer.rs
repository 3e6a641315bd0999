//! The task side of a write: one task's batches → files in its attempt directory.
//!
//! Rows are routed to Hive-style directories by the values of the partition columns (which are
//! left out of the files, as Spark does), each directory has one open file at a time, and a file is
//! closed and the next one started after `max_records_per_file` rows. Files are named
//! `part-<task>-<job>-c<n>.<ext>`: unique per job and task, so an `append` never clashes with an
//! earlier write.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use datafusion::common::config::TableOptions;
use datafusion::common::file_options::csv_writer::CsvWriterOptions;
use datafusion::common::file_options::json_writer::JsonWriterOptions;
use datafusion::common::parsers::CompressionTypeVariant;
use datafusion::execution::SendableRecordBatchStream;
use faisca_common::{Error, Result};
use faisca_proto::WrittenFile;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncWriteExt;

use super::{Destination, FileSinkSpec, WriteFormat};

/// Hive's name for a partition whose value is null.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Which task attempt is writing.
#[derive(Debug, Clone)]
pub struct TaskAttempt {
    /// The job.
    pub job: String,
    /// The task (partition of the stage).
    pub partition: u32,
    /// The attempt.
    pub attempt: u32,
}

/// How files of one format are encoded.
#[derive(Clone)]
enum Encoding {
    Parquet(WriterProperties),
    Csv(CsvWriterOptions),
    Json,
}

impl Encoding {
    fn new(spec: &FileSinkSpec, options: &TableOptions, schema: &SchemaRef) -> Result<Self> {
        let uncompressed = |c: CompressionTypeVariant, what: &str| {
            if c == CompressionTypeVariant::UNCOMPRESSED {
                Ok(())
            } else {
                Err(Error::user(format!(
                    "{what} writes support no compression yet (format.compression = {c:?}); write Parquet for compressed files"
                )))
            }
        };
        Ok(match spec.format {
            WriteFormat::Parquet => {
                let mut parquet = options.parquet.clone();
                parquet.arrow_schema(schema);
                let writer =
                    datafusion::common::file_options::parquet_writer::ParquetWriterOptions::try_from(
                        &parquet,
                    )
                    .map_err(|e| Error::user(format!("invalid Parquet write options: {e}")))?;
                Encoding::Parquet(writer.writer_options().clone())
            }
            WriteFormat::Csv => {
                let csv = CsvWriterOptions::try_from(&options.csv)
                    .map_err(|e| Error::user(format!("invalid CSV write options: {e}")))?;
                uncompressed(csv.compression, "CSV")?;
                Encoding::Csv(csv)
            }
            WriteFormat::Json => {
                let json = JsonWriterOptions::try_from(&options.json)
                    .map_err(|e| Error::user(format!("invalid JSON write options: {e}")))?;
                uncompressed(json.compression, "JSON")?;
                Encoding::Json
            }
        })
    }
}

/// One file being written.
enum OpenFile {
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
    Text(Box<TextFile>),
}

/// A CSV or JSON file being written.
struct TextFile {
    writer: BufWriter,
    encoding: Encoding,
    bytes: u64,
    header_written: bool,
}

impl OpenFile {
    fn open(
        dest: &Destination,
        path: Path,
        schema: &SchemaRef,
        encoding: &Encoding,
    ) -> Result<Self> {
        Ok(match encoding {
            Encoding::Parquet(props) => {
                let writer = BufWriter::new(dest.store.clone(), path);
                OpenFile::Parquet(Box::new(
                    AsyncArrowWriter::try_new(writer, schema.clone(), Some(props.clone()))
                        .map_err(parquet_error)?,
                ))
            }
            Encoding::Csv(_) | Encoding::Json => OpenFile::Text(Box::new(TextFile {
                writer: BufWriter::new(dest.store.clone(), path),
                encoding: encoding.clone(),
                bytes: 0,
                header_written: false,
            })),
        })
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            OpenFile::Parquet(writer) => writer.write(batch).await.map_err(parquet_error)?,
            OpenFile::Text(file) => {
                let TextFile {
                    writer,
                    encoding,
                    bytes,
                    header_written,
                } = file.as_mut();
                let encoded = match encoding {
                    Encoding::Csv(csv) => {
                        let header = csv.writer_options.header() && !*header_written;
                        let mut w = csv
                            .writer_options
                            .clone()
                            .with_header(header)
                            .build(Vec::new());
                        w.write(batch)?;
                        *header_written = true;
                        w.into_inner()
                    }
                    _ => {
                        let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
                        w.write(batch)?;
                        w.finish()?;
                        w.into_inner()
                    }
                };
                *bytes += encoded.len() as u64;
                writer
                    .put(Bytes::from(encoded))
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok(())
    }

    /// Finish the file; returns its size.
    async fn close(self) -> Result<u64> {
        match self {
            OpenFile::Parquet(mut writer) => {
                writer.finish().await.map_err(parquet_error)?;
                Ok(writer.bytes_written() as u64)
            }
            OpenFile::Text(mut file) => {
                let bytes = file.bytes;
                file.writer
                    .shutdown()
                    .await
                    .map_err(|e| Error::external(format!("finishing a written file: {e}")))?;
                Ok(bytes)
            }
        }
    }
}

fn parquet_error(e: parquet::errors::ParquetError) -> Error {
    Error::external(format!("writing a Parquet file: {e}"))
}

fn store_error(e: object_store::Error) -> Error {
    Error::external(format!("writing a file: {e}"))
}

/// The files of one partition directory.
struct DirectoryFiles {
    /// `a=1/b=x/` or empty.
    prefix: String,
    open: Option<(OpenFile, String, u64)>,
    next_file: u32,
}

/// Check a write of rows of `schema` before any task runs: the partition columns exist and leave
/// data columns, and the format options make a writer.
pub fn check(spec: &FileSinkSpec, options: &TableOptions, schema: &SchemaRef) -> Result<()> {
    let (partition_columns, data_columns) = split_columns(schema, &spec.partition_by)?;
    for &i in &partition_columns {
        partition_type_supported(schema.field(i).data_type(), schema.field(i).name())?;
    }
    Encoding::new(spec, options, &Arc::new(schema.project(&data_columns)?)).map(|_| ())
}

/// Write everything `stream` yields as `attempt`'s files of `spec` in `dest`; returns the files
/// written, with paths relative to the destination root.
pub async fn write_task(
    mut stream: SendableRecordBatchStream,
    spec: &FileSinkSpec,
    options: &TableOptions,
    dest: &Destination,
    attempt: &TaskAttempt,
) -> Result<Vec<WrittenFile>> {
    let schema = stream.schema();
    let (partition_columns, data_columns) = split_columns(&schema, &spec.partition_by)?;
    let data_schema = Arc::new(schema.project(&data_columns)?);
    let encoding = Encoding::new(spec, options, &data_schema)?;
    let mut writer = TaskWriter {
        spec,
        dest,
        attempt,
        encoding,
        data_schema,
        data_columns,
        directories: HashMap::new(),
        written: Vec::new(),
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        if partition_columns.is_empty() {
            writer.write_rows(String::new(), &batch).await?;
            continue;
        }
        for (prefix, rows) in group_rows(&batch, &schema, &partition_columns)? {
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(rows))?
            };
            writer.write_rows(prefix, &part).await?;
        }
    }
    if spec.single_file.is_some() && writer.directories.is_empty() {
        // DataFusion writes the file of a COPY to a file path even without rows (a CSV header,
        // a Parquet schema).
        writer.write_empty().await?;
    }
    writer.finish().await
}

struct TaskWriter<'a> {
    spec: &'a FileSinkSpec,
    dest: &'a Destination,
    attempt: &'a TaskAttempt,
    encoding: Encoding,
    data_schema: SchemaRef,
    data_columns: Vec<usize>,
    directories: HashMap<String, DirectoryFiles>,
    written: Vec<WrittenFile>,
}

impl TaskWriter<'_> {
    /// The open file of directory `prefix`, opening the directory's next one if none is.
    fn open_file(&mut self, prefix: &str) -> Result<&mut (OpenFile, String, u64)> {
        let dir = self
            .directories
            .entry(prefix.to_string())
            .or_insert_with(|| DirectoryFiles {
                prefix: prefix.to_string(),
                open: None,
                next_file: 0,
            });
        if dir.open.is_none() {
            let name = format!(
                "{}part-{:05}-{}-c{:03}.{}",
                dir.prefix,
                self.attempt.partition,
                self.attempt.job,
                dir.next_file,
                self.spec.format.name()
            );
            dir.next_file += 1;
            let temp = self.dest.child(&format!(
                "{}/{name}",
                Destination::attempt_dir(
                    &self.attempt.job,
                    self.attempt.partition,
                    self.attempt.attempt
                )
            ))?;
            let file = OpenFile::open(self.dest, temp, &self.data_schema, &self.encoding)?;
            dir.open = Some((file, name, 0));
        }
        Ok(dir.open.as_mut().expect("opened above"))
    }

    /// Write `batch` (all of whose rows belong in `prefix`), rolling files at the row limit.
    async fn write_rows(&mut self, prefix: String, batch: &RecordBatch) -> Result<()> {
        let data = batch.project(&self.data_columns)?;
        let limit = self.spec.max_records_per_file;
        let mut offset = 0;
        while offset < data.num_rows() {
            let (file, _, rows) = self.open_file(&prefix)?;
            let room = if limit == 0 { u64::MAX } else { limit - *rows };
            let n = ((data.num_rows() - offset) as u64).min(room) as usize;
            file.write(&data.slice(offset, n)).await?;
            *rows += n as u64;
            offset += n;
            if limit > 0 && *rows >= limit {
                let dir = self.directories.get_mut(&prefix).expect("written to");
                let (file, name, rows) = dir.open.take().expect("open");
                let bytes = file.close().await?;
                self.written.push(WrittenFile {
                    path: name,
                    rows,
                    bytes,
                });
            }
        }
        Ok(())
    }

    /// Write a file without rows (what a format writes for none: a CSV header, a Parquet schema).
    async fn write_empty(&mut self) -> Result<()> {
        let empty = RecordBatch::new_empty(self.data_schema.clone());
        let (file, _, _) = self.open_file("")?;
        file.write(&empty).await
    }

    async fn finish(mut self) -> Result<Vec<WrittenFile>> {
        let mut prefixes: Vec<String> = self.directories.keys().cloned().collect();
        prefixes.sort();
        for prefix in prefixes {
            let dir = self.directories.get_mut(&prefix).expect("listed");
            if let Some((file, name, rows)) = dir.open.take() {
                let bytes = file.close().await?;
                self.written.push(WrittenFile {
                    path: name,
                    rows,
                    bytes,
                });
            }
        }
        Ok(self.written)
    }
}

/// Indices of the partition columns named `names`, and of the other (data) columns.
fn split_columns(schema: &Schema, names: &[String]) -> Result<(Vec<usize>, Vec<usize>)> {
    let partition_columns = partition_indices(schema, names)?;
    let data_columns = (0..schema.fields().len())
        .filter(|i| !partition_columns.contains(i))
        .collect();
    Ok((partition_columns, data_columns))
}

fn partition_indices(schema: &Schema, names: &[String]) -> Result<Vec<usize>> {
    let indices = names
        .iter()
        .map(|name| {
            schema
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Error::user(format!(
                        "partition column '{name}' is not a column of the written rows; expected one of: {}",
                        schema
                            .fields()
                            .iter()
                            .map(|f| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    if !indices.is_empty() && indices.len() >= schema.fields().len() {
        return Err(Error::user(
            "cannot partition by every column: the files would have no columns left",
        ));
    }
    Ok(indices)
}

/// Rows of `batch` grouped by their partition directory (`a=1/b=x/`), in first-seen order.
fn group_rows(
    batch: &RecordBatch,
    schema: &Schema,
    columns: &[usize],
) -> Result<Vec<(String, Vec<u32>)>> {
    let values: Vec<ArrayRef> = columns
        .iter()
        .map(|&i| partition_strings(batch.column(i)))
        .collect::<Result<_>>()?;
    let strings: Vec<&StringArray> = values
        .iter()
        .map(|a| {
            a.as_any()
                .downcast_ref::<StringArray>()
                .expect("cast to Utf8")
        })
        .collect();
    let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut key = String::new();
    for row in 0..batch.num_rows() {
        key.clear();
        for (column, array) in columns.iter().zip(&strings) {
            let name = schema.field(*column).name();
            let value = if array.is_null(row) {
                NULL_PARTITION
            } else {
                array.value(row)
            };
            let _ = write!(key, "{}={}/", escape(name), escape(value));
        }
        match index.get(key.as_str()) {
            Some(&g) => groups[g].1.push(row as u32),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key.clone(), vec![row as u32]));
            }
        }
    }
    Ok(groups)
}

fn partition_type_supported(data_type: &DataType, name: &str) -> Result<()> {
    let supported = match data_type {
        DataType::Dictionary(_, value) => matches!(
            value.as_ref(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Boolean
        | DataType::Date32
        | DataType::Date64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => true,
        t => t.is_integer(),
    };
    if supported {
        Ok(())
    } else {
        Err(Error::user(format!(
            "cannot partition by column '{name}' of type {data_type}: expected strings, integers, booleans, dates or decimals"
        )))
    }
}

fn partition_strings(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.clone()),
        _ => Ok(cast(array, &DataType::Utf8)?),
    }
}

/// Percent-encode what Hive escapes in path names (DataFusion decodes it when reading).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let special = c.is_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '{'
                    | '['
                    | ']'
                    | '^'
                    | ' '
            );
        if special {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::Field;

    #[test]
    fn escapes_what_hive_escapes() {
        assert_eq!(escape("a b/c=d%"), "a%20b%2Fc%3Dd%25");
        assert_eq!(escape("AIR"), "AIR");
        assert_eq!(escape("ção"), "ção");
    }

    #[test]
    fn groups_rows_by_directory_with_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("a"),
                    Some("b/c"),
                ])),
                Arc::new(Int32Array::from(vec![1, 2, 3, 4])),
            ],
        )
        .unwrap();
        let groups = group_rows(&batch, &schema, &[0]).unwrap();
        assert_eq!(
            groups,
            vec![
                ("k=a/".to_string(), vec![0, 2]),
                (format!("k={NULL_PARTITION}/"), vec![1]),
                ("k=b%2Fc/".to_string(), vec![3]),
            ]
        );
    }

    #[test]
    fn partition_columns_must_exist_and_leave_data() {
        let schema = Schema::new(vec![Field::new("k", DataType::Utf8, true)]);
        let e = partition_indices(&schema, &["x".into()]).unwrap_err();
        assert!(e.to_string().contains("'x'"), "{e}");
        let e = partition_indices(&schema, &["K".into()]).unwrap_err();
        assert!(e.to_string().contains("every column"), "{e}");
    }
}
