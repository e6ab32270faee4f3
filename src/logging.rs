//! The text form of the operational log (stderr). Values from input reach `tracing` events (an
//! error quoting Genesys, a manager's email, an upstream detail); a raw newline in one would let it
//! forge a log line, an ESC would drive the reader's terminal. Every control character in a field
//! value (the message included) is written escaped (`\n`, `\u{1b}`). The JSON form escapes them itself.

use std::fmt;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// The field formatter of the text log: the message, then `name=value` pairs, control characters escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(|writer: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn fmt::Debug| {
        if field.name() != "message" {
            write!(writer, "{}=", field.name())?;
        }
        // A `%value` field reaches here as its Display text, unescaped: escape the text written.
        let text = format!("{value:?}");
        for c in text.chars() {
            match c.is_control() {
                true => write!(writer, "{}", c.escape_debug())?,
                false => writer.write_char(c)?,
            }
        }
        Ok(())
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// What the subscriber writes, kept for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_value_with_a_newline_or_an_escape_cannot_forge_a_log_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .fmt_fields(super::escaped_fields())
            .finish();
        let forged = "x\n2026-11-29T00:00:00.000000Z  INFO genesys_provisioner: forged \u{1b}[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(manager = %forged, detail = ?forged, "manager not found");
            tracing::error!("request failed: {forged}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per event: {text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r"manager=x\n2026-11-29"), "{text}");
        assert!(text.contains(r"request failed: x\n2026"), "{text}");
        assert!(text.contains(r"\u{1b}[2J"), "{text}");
    }
}
