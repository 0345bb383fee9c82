//! Text-log fields without colour: the same bytes as tracing-subscriber's `DefaultFields` with ANSI
//! off, written straight to the line instead of through `nu_ansi_term` styles that paint nothing
//! (a tenth of the proxy's instructions per request went into formatting the access line).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// `fmt_fields` for text lines when stderr is not a terminal.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

pub(crate) struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    fn pad(&mut self) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    fn write_field(&mut self, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
        let name = field.name();
        // `log` crate metadata the line's prefix already carries.
        if name.starts_with("log.") {
            return Ok(());
        }
        self.pad()?;
        if name == "message" {
            // As `DefaultFields`: terminal control characters in the message are escaped.
            return write!(Escaping(&mut self.writer), "{value:?}");
        }
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_char('=')?;
        write!(self.writer, "{value:?}")
    }
}

impl PlainVisitor<'_> {
    /// `name="value"` for a value whose `Debug` is itself in quotes (see [`is_plain`]), written
    /// without the formatting machinery: the access line's strings (route, client, op) take this way.
    fn write_quoted_field(&mut self, field: &Field, value: &str) -> fmt::Result {
        let name = field.name();
        if name.starts_with("log.") {
            return Ok(());
        }
        self.pad()?;
        self.writer
            .write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.writer.write_str("=\"")?;
        self.writer.write_str(value)?;
        self.writer.write_char('"')
    }
}

/// Printable ASCII without `"` or `\\`: what `str`'s `Debug` writes as it is, between quotes.
fn is_plain(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            self.write_field(field, &format_args!("{value}"))
        } else if is_plain(value) {
            self.write_quoted_field(field, value)
        } else {
            self.write_field(field, &value)
        };
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.result = match value.source() {
            Some(source) => self.write_field(
                field,
                &format_args!(
                    "{} {}.sources={}",
                    EscapedDisplay(value),
                    field.name(),
                    SourceList(source)
                ),
            ),
            None => self.write_field(field, &format_args!("{}", EscapedDisplay(value))),
        };
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = self.write_field(field, value);
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// Writes through, escaping the characters a terminal would act on (as tracing-subscriber does).
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(is_terminal_control) {
            self.0.write_str(&rest[..at])?;
            let ch = rest[at..].chars().next().unwrap_or(' ');
            match ch {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", ch as u32)?
                }
                _ => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
            }
            rest = &rest[at + ch.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

fn is_terminal_control(ch: char) -> bool {
    matches!(
        ch,
        '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
    )
}

struct EscapedDisplay<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for EscapedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaping(f), "{}", self.0)
    }
}

impl fmt::Debug for EscapedDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `[error, its source, ...]`, as `DefaultFields` renders an error's chain.
struct SourceList<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for SourceList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut current = Some(self.0);
        while let Some(error) = current {
            list.entry(&EscapedDisplay(error));
            current = error.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::PlainFields;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut bytes) = self.0.lock() {
                bytes.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer \u{1b}[31mfailure")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn emit() {
        let inner = std::io::Error::other("inner \u{9b}cause");
        let outer = Outer(inner);
        let err: &(dyn std::error::Error + 'static) = &outer;
        tracing::info!(
            target: "scim_proxy::access",
            request_id = %"r-1",
            route = "okta \"x\"",
            status = 201u16,
            neg = -3i64,
            ok = true,
            ratio = 0.5f64,
            r#type = "user",
            plain_text = "okta-prod_1 (x)",
            accented = "Jos\u{e9}",
            tabbed = "a\tb",
            quoted = "it's \\ here",
            empty = "",
            error = err,
            shown = ?Some("v\u{1b}"),
            "request \u{1b}[2J done\u{7}"
        );
        tracing::warn!(plain = %"a b", "second");
    }

    fn line_with<N>(fields: N) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .with_writer(out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn plain_fields_write_the_bytes_default_fields_write_without_colour() {
        let ours = line_with(PlainFields);
        let theirs = line_with(tracing_subscriber::fmt::format::DefaultFields::new());
        assert!(ours.contains("status=201"), "{ours}");
        assert!(ours.contains("\\x1b[2J"), "message escaped: {ours}");
        assert!(ours.contains("error.sources=["), "{ours}");
        assert_eq!(ours, theirs);
    }
}
