//! The JSON log line, one object per event: `timestamp`, `level`, the
//! event's fields (`message` first), `target`, and `spans`, the fields of
//! each span the event happened in, outermost first, each with its `name`.
//!
//! tracing-subscriber's own JSON format writes the same object, but it keeps
//! each span's fields as a JSON text and parses that text back into a map
//! for every event logged in the span; with two lines per status lookup,
//! logging was the largest cost of a lookup after the SQL. Here a span's
//! fields are kept as the members of a JSON object, written once, and
//! spliced into each line as they are.

use std::fmt::{self, Write as _};

use chrono::{SecondsFormat, Utc};

use super::request_log::RequestFields;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter, format::Writer},
    registry::LookupSpan,
};

/// The event format (see the module's docs).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct JsonLines;

/// Span fields as the members of a JSON object, without the braces
/// (`"a":1,"b":"x"`), so a line splices them as they are.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct JsonMembers;

impl<'writer> FormatFields<'writer> for JsonMembers {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut members = Members::new(writer);
        fields.record(&mut members);
        members.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut members = Members::new(current.as_writer());
        members.first = first;
        fields.record(&mut members);
        members.result
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        timestamp(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", metadata.level())?;
        let mut members = Members::new(writer.by_ref());
        members.first = false;
        event.record(&mut members);
        members.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, metadata.target())?;
        let mut listed = false;
        let mut next = |writer: &mut Writer<'_>| {
            writer.write_str(if std::mem::replace(&mut listed, true) {
                ",{"
            } else {
                ",\"spans\":[{"
            })
        };
        // A request without a span (see `request_log`) first, as its span would be.
        RequestFields::with_unspanned(|request| {
            next(&mut writer)?;
            request_members(&mut writer, request)
        })
        .transpose()?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                next(&mut writer)?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.fields.is_empty()
                {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
                writer.write_str("\"name\":")?;
                string(&mut writer, span.name())?;
                writer.write_char('}')?;
            }
        }
        if listed {
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

/// The members of `request`'s entry in `spans`, as its span's fields and
/// name are written (`RequestFields::span`; the fields left empty there are
/// for traces and the HTTP status, never recorded while the request logs).
fn request_members(writer: &mut Writer<'_>, request: &RequestFields) -> fmt::Result {
    writer.write_str("\"otel.kind\":\"server\",\"request_id\":")?;
    string(writer, request.id.as_str())?;
    writer.write_str(",\"http.request.method\":")?;
    string(writer, request.method.as_str())?;
    writer.write_str(",\"http.route\":")?;
    string(writer, request.route.as_ref())?;
    writer.write_str(",\"name\":\"request\"}")
}

/// Now in UTC, as RFC 3339 with microseconds (`2026-11-27T23:11:49.006186Z`).
fn timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = Utc::now();
    let mut buffer = [0; entity::timestamp::MICROS_LEN];
    match entity::timestamp::write_micros(&now, &mut buffer) {
        Some(text) => writer.write_str(text),
        None => writer.write_str(&now.to_rfc3339_opts(SecondsFormat::Micros, true)),
    }
}

/// Writes fields as JSON object members, each preceded by a comma but the
/// first.
struct Members<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl<'a> Members<'a> {
    fn new(writer: Writer<'a>) -> Self {
        Self { writer, first: true, result: Ok(()) }
    }

    fn member(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'a>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let first = std::mem::take(&mut self.first);
        let name = field.name();
        self.result = if crate::json::needs_escaping(name) {
            self.writer
                .write_str(if first { "" } else { "," })
                .and_then(|()| string(&mut self.writer, name))
                .and_then(|()| self.writer.write_char(':'))
        } else {
            // A name rarely needs escaping: `,"name":` in three writes.
            self.writer
                .write_str(if first { "\"" } else { ",\"" })
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_str("\":"))
        }
        .and_then(|()| value(&mut self.writer));
    }
}

// Numbers as serde_json writes them (itoa and zmij), without `core::fmt`.
impl Visit for Members<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; serde_json writes them as null.
        if value.is_finite() {
            self.member(field, |w| w.write_str(zmij::Buffer::new().format_finite(value)));
        } else {
            self.member(field, |w| w.write_str("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// `value` as a JSON string.
fn string(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(&mut *writer).write_str(value)?;
    writer.write_char('"')
}

/// Writes what it is given escaped for the inside of a JSON string, as
/// serde_json escapes it.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if !crate::json::needs_escaping(text) {
            return self.0.write_str(text);
        }
        let mut plain = 0;
        for (index, byte) in text.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&text[plain..index])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = index + 1;
        }
        self.0.write_str(&text[plain..])
    }
}

/// Builds the JSON log layer over `S`, writing to `writer`.
pub(super) fn layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .fmt_fields(JsonMembers)
        .with_writer(writer)
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// What a JSON log layer wrote (see [`Lines::subscriber`]).
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        /// A subscriber writing JSON lines here.
        pub(in crate::telemetry) fn subscriber(&self) -> impl Subscriber + Send + Sync + use<> {
            let writer = self.clone();
            tracing_subscriber::registry().with(layer(move || writer.clone()))
        }

        /// The lines written so far, parsed.
        pub(in crate::telemetry) fn parsed(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().map(|bytes| bytes.clone()).unwrap_or_default();
            let text = String::from_utf8(bytes).unwrap_or_default();
            text.lines()
                .map(|line| {
                    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))
                })
                .collect()
        }
    }

    fn logged(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let lines = Lines::default();
        tracing::subscriber::with_default(lines.subscriber(), emit);
        lines.parsed()
    }

    #[test]
    fn a_line_holds_the_event_its_target_and_its_spans_fields() {
        let lines = logged(|| {
            let outer =
                tracing::info_span!("request", request_id = "r-1", status = tracing::field::Empty);
            let _outer = outer.enter();
            outer.record("status", 200);
            let inner = tracing::info_span!("inner", depth = 2_u64);
            let _inner = inner.enter();
            tracing::info!(
                text = "quote \" backslash \\ newline \n tab \t bell \u{7} é",
                debug = ?Some("x"),
                ratio = 0.5,
                nan = f64::NAN,
                negative = -3_i64,
                yes = true,
                "status lookup"
            );
        });
        let [line] = &lines[..] else { panic!("one line: {lines:?}") };
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "status lookup");
        assert_eq!(line["text"], "quote \" backslash \\ newline \n tab \t bell \u{7} é");
        assert_eq!(line["debug"], "Some(\"x\")");
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["nan"], serde_json::Value::Null);
        assert_eq!(line["negative"], -3);
        assert_eq!(line["yes"], true);
        assert_eq!(line["target"], module_path!());
        let spans = serde_json::json!([
            { "request_id": "r-1", "status": 200, "name": "request" },
            { "depth": 2, "name": "inner" },
        ]);
        assert_eq!(line["spans"], spans);
        let timestamp = line["timestamp"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{timestamp}");
        assert_eq!(timestamp.len(), "2026-11-27T23:11:49.006186Z".len(), "{timestamp}");
    }

    #[test]
    fn a_line_outside_any_span_has_no_span_list() {
        let lines = logged(|| tracing::warn!("alone"));
        let [line] = &lines[..] else { panic!("one line: {lines:?}") };
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "alone");
        assert!(line.get("spans").is_none(), "{line}");
    }
}
