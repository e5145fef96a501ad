//! [`JsonLinesSink`]: one JSON object per operation and line, written straight from the
//! converted values.

use super::{Operation, RecordSink, WriteResult};
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::{TargetRecord, TargetValue};
use async_trait::async_trait;
use chrono::SecondsFormat;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

/// A sink that writes each operation as one JSON line to a writer:
/// `{"op":"upsert","object":"Company","key":{...},"record":{...}}`,
/// `{"op":"delete","object":"Company","key":{...}}`.
///
/// A batch is serialized whole first and handed to the writer in one `write_all`, so a batch
/// that cannot be serialized writes nothing, and the writer only ever receives whole lines.
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
    destination: String,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// Writes to `writer` (wrap files in a `BufWriter`).
    pub fn new(writer: W) -> Self {
        Self {
            writer: Mutex::new(writer),
            destination: "its writer".to_owned(),
        }
    }

    /// Names what the writer writes to (a file's path, say), for error messages.
    #[must_use]
    pub fn with_destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = destination.into();
        self
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.writer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<W> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

impl<W> JsonLinesSink<W> {
    /// An error naming the destination and the operating system's reason.
    fn error(&self, error: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::new(
            ErrorKind::Sink,
            format!(
                "the JSON Lines sink could not write to {}: {error}",
                self.destination
            ),
        )
        .with_source(error)
    }
}

#[async_trait]
impl<W: Write + Send> RecordSink for JsonLinesSink<W> {
    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>> {
        let mut lines = Vec::with_capacity(operations.len() * 256);
        for operation in operations {
            write_line(&mut lines, object, operation).map_err(|e| self.error(e))?;
        }
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(&lines)
            .map_err(|e| self.error(e))?;
        Ok(vec![Ok(()); operations.len()])
    }

    async fn flush(&self) -> Result<()> {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
            .map_err(|e| self.error(e))
    }
}

/// One line: `op`, `object`, then the operation's `key` and `record`, and a newline.
fn write_line(out: &mut Vec<u8>, object: &str, operation: &Operation) -> io::Result<()> {
    let (op, key, record) = match operation {
        Operation::Insert { record } => ("insert", None, Some(record)),
        Operation::Update { key, record } => ("update", Some(key), Some(record)),
        Operation::Upsert { key, record } => ("upsert", Some(key), Some(record)),
        Operation::Delete { key } => ("delete", Some(key), None),
    };
    out.extend_from_slice(b"{\"op\":\"");
    out.extend_from_slice(op.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    write_str(out, object)?;
    if let Some(key) = key {
        out.extend_from_slice(b",\"key\":");
        write_record(out, key)?;
    }
    if let Some(record) = record {
        out.extend_from_slice(b",\"record\":");
        write_record(out, record)?;
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// A record as a JSON object, its fields in order.
fn write_record(out: &mut Vec<u8>, record: &TargetRecord) -> io::Result<()> {
    out.push(b'{');
    for (i, (name, value)) in record.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, name)?;
        out.push(b':');
        write_value(out, value)?;
    }
    out.push(b'}');
    Ok(())
}

/// A value as [`TargetValue`]'s `Serialize` writes it: numbers digit for digit, dates as
/// `YYYY-MM-DD`, instants in RFC 3339 UTC.
fn write_value(out: &mut Vec<u8>, value: &TargetValue) -> io::Result<()> {
    match value {
        TargetValue::Null => out.extend_from_slice(b"null"),
        TargetValue::Bool(true) => out.extend_from_slice(b"true"),
        TargetValue::Bool(false) => out.extend_from_slice(b"false"),
        TargetValue::Number(number) => out.extend_from_slice(number.as_str().as_bytes()),
        TargetValue::String(text) | TargetValue::Id(text) => write_str(out, text)?,
        TargetValue::Date(date) => write!(out, "\"{}\"", date.format("%Y-%m-%d"))?,
        TargetValue::DateTime(instant) => {
            write_str(out, &instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))?
        }
    }
    Ok(())
}

/// A JSON string, escaped as `serde_json` escapes it.
fn write_str(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    serde_json::to_writer(out, text).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::tests::record;
    use chrono::{NaiveDate, TimeZone, Utc};

    #[tokio::test]
    async fn json_lines_hold_one_operation_each() {
        let sink = JsonLinesSink::new(Vec::new());
        let (key, record) = record("a1", "Contoso");
        let results = sink
            .write(
                "Company",
                &[
                    Operation::Upsert {
                        key: key.clone(),
                        record,
                    },
                    Operation::Delete { key },
                ],
            )
            .await
            .unwrap();
        assert_eq!(results, vec![Ok(()), Ok(())]);
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"{"op":"upsert","object":"Company","key":{"ExternalId":"a1"},"record":{"ExternalId":"a1","Name":"Contoso"}}"#,
                r#"{"op":"delete","object":"Company","key":{"ExternalId":"a1"}}"#,
            ]
        );
    }

    #[test]
    fn every_value_is_written_as_serde_json_writes_it() {
        let mut record = TargetRecord::new();
        let number = crate::value::Number::parse("922337203685477.5807").unwrap();
        let instant = Utc.with_ymd_and_hms(2024, 6, 12, 14, 13, 25).unwrap();
        let values = [
            TargetValue::Null,
            TargetValue::Bool(true),
            TargetValue::Bool(false),
            TargetValue::Number(number),
            TargetValue::String("quote \" backslash \\ tab \t bell \u{7} é 😀".into()),
            TargetValue::Id("00000000-0000-0000-0000-000000000001".into()),
            TargetValue::Date(NaiveDate::from_ymd_opt(2024, 4, 10).unwrap()),
            TargetValue::DateTime(instant),
            TargetValue::DateTime(instant + chrono::Duration::milliseconds(120)),
        ];
        for (i, value) in values.into_iter().enumerate() {
            record.insert(format!("field \"{i}\""), value);
        }
        let mut line = Vec::new();
        write_record(&mut line, &record).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            serde_json::to_string(&record).unwrap()
        );
    }
}
