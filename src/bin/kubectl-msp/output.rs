//! How `kubectl msp` prints: tables aligned like kubectl's, or a stable JSON
//! or YAML document of the same rows, and ages written like kubectl writes
//! them.
//!
//! Every listing command builds plain row structs (camelCase when
//! serialized) and hands them here, so `-o json` is a contract of its own
//! rather than whatever the API objects happen to hold, and the table and
//! the document never disagree.

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use std::io::Write;

/// The `-o/--output` formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns, as `kubectl get` prints them.
    #[default]
    Table,
    /// A JSON document.
    Json,
    /// A YAML document.
    Yaml,
}

/// Columns of text, rendered with uppercase headers and three spaces
/// between columns, no borders.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

/// Spaces between two columns (kubectl's tabwriter padding).
const GAP: usize = 3;

impl Table {
    /// A table with these column headers (printed uppercase).
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds one row; missing cells are empty, extra cells are dropped.
    pub fn push(&mut self, mut cells: Vec<String>) {
        cells.resize(self.headers.len(), String::new());
        self.rows.push(cells);
    }

    /// The rendered table, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let pad = width - cell.chars().count() + GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `value` as a JSON (pretty) or YAML document; `None` for the table format.
pub fn document<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> anyhow::Result<Option<String>> {
    Ok(match format {
        Format::Table => None,
        Format::Json => {
            let mut text = serde_json::to_string_pretty(value).context("render JSON")?;
            text.push('\n');
            Some(text)
        }
        Format::Yaml => Some(serde_yaml::to_string(value).context("render YAML")?),
    })
}

/// Prints `rows` as a table (built by `table`) or as a JSON/YAML list. An
/// empty table prints `empty` to stderr instead, as kubectl does.
pub fn print_rows<T: Serialize>(
    format: Format,
    rows: &[T],
    empty: &str,
    table: impl Fn(&[T]) -> Table,
) -> anyhow::Result<()> {
    if let Some(text) = document(format, rows)? {
        return print(&text);
    }
    if rows.is_empty() {
        eprintln!("{empty}");
        return Ok(());
    }
    print(&table(rows).render())
}

/// Writes `text` to stdout. A closed pipe (`kubectl msp offers | head`) is
/// not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("write to stdout"))
        }
        _ => Ok(()),
    }
}

/// How long ago `then` was, as kubectl's AGE column writes it: `45s`, `5m`,
/// `3h`, `2d`, `1y`.
pub fn age(then: Timestamp, now: Timestamp) -> String {
    short_duration(now.as_second() - then.as_second())
}

/// A span of `seconds` in kubectl's short form (negative spans, from clock
/// skew, read `0s`).
pub fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s if s < 365 * 86_400 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

/// `text`, or `-` when there is none (kubectl's empty cell).
pub fn or_dash(text: Option<&str>) -> String {
    match text {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => "-".to_string(),
    }
}

/// "1 active, 2 pending"-style counts: the non-zero parts, `-` when all are
/// zero.
pub fn counts(parts: &[(i64, &str)]) -> String {
    let shown: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, label)| format!("{n} {label}"))
        .collect();
    if shown.is_empty() {
        "-".to_string()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let mut table = Table::new(&["name", "ready", "reason"]);
        table.push(vec!["a".into(), "True".into(), "Granted".into()]);
        table.push(vec!["longer-name".into(), "False".into(), String::new()]);
        assert_eq!(
            table.render(),
            "NAME          READY   REASON\n\
             a             True    Granted\n\
             longer-name   False\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_wide_characters_count_once() {
        let mut table = Table::new(&["a", "b"]);
        table.push(vec!["é".into()]);
        assert_eq!(table.render(), "A   B\né\n");
    }

    #[test]
    fn documents_are_lists_of_rows() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Row {
            plan_name: &'static str,
        }
        let rows = [Row { plan_name: "p" }];
        assert_eq!(document(Format::Table, &rows).unwrap(), None);
        assert_eq!(
            document(Format::Json, &rows).unwrap().unwrap(),
            "[\n  {\n    \"planName\": \"p\"\n  }\n]\n"
        );
        assert_eq!(
            document(Format::Yaml, &rows).unwrap().unwrap(),
            "- planName: p\n"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(short_duration(-5), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(300), "5m");
        assert_eq!(short_duration(3 * 3600 + 59), "3h");
        assert_eq!(short_duration(2 * 86_400 + 7), "2d");
        assert_eq!(short_duration(800 * 86_400), "2y");
        let now = Timestamp::from_second(1_000_000).unwrap();
        let then = Timestamp::from_second(1_000_000 - 600).unwrap();
        assert_eq!(age(then, now), "10m");
    }

    #[test]
    fn counts_skip_zeroes() {
        assert_eq!(
            counts(&[(1, "active"), (2, "pending")]),
            "1 active, 2 pending"
        );
        assert_eq!(counts(&[(0, "active"), (2, "pending")]), "2 pending");
        assert_eq!(counts(&[(0, "active"), (0, "pending")]), "-");
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("x")), "x");
    }
}

/// Builders the unit tests of every command share.
#[cfg(test)]
pub mod fixtures {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    /// A condition that last changed at second 1,000,000 of the epoch.
    pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(Timestamp::from_second(1_000_000).unwrap()),
            observed_generation: None,
        }
    }
}
