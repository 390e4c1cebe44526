//! Output of `havipctl`: aligned tables for people, JSON with `--json`.

use havip::{
    api::{Client, ClientError, Deleted},
    model::Op,
};
use serde::{de::DeserializeOwned, Serialize};

/// How results are printed.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as pretty JSON, or as the text `human` makes of it.
    pub fn show<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot encode JSON: {e}"),
            }
        } else {
            let text = human(value);
            if text.ends_with('\n') {
                print!("{text}");
            } else {
                println!("{text}");
            }
        }
    }
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// A table of `items`, one row each as `row` makes it.
pub fn table_of<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    table(header, &rows)
}

/// Runs a create / delete / modify operation and shows its reply (the
/// deleted id, or the resource as a one-row `table`), or with no operation
/// lists every `list` resource (`GET /v1/<list>`).
///
/// # Errors
/// As [`Client::apply`] and [`Client::list`].
pub fn apply_or_list<T: DeserializeOwned + Serialize>(
    client: &Client,
    out: Output,
    op: Option<Op>,
    kind: &str,
    list: &str,
    table: fn(&[T]) -> String,
) -> Result<(), ClientError> {
    match op {
        Some(op) if op.is_delete() => {
            let d: Deleted = client.apply(op)?;
            out.show(&d, |d| format!("deleted {kind} {}", d.deleted));
        }
        Some(op) => {
            let v: T = client.apply(op)?;
            out.show(&v, |v| table(std::slice::from_ref(v)));
        }
        None => {
            let v: Vec<T> = client.list(list)?;
            out.show(&v, |v| table(v));
        }
    }
    Ok(())
}

/// `-` for nothing.
pub fn or_dash(s: Option<impl ToString>) -> String {
    s.map(|s| s.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Comma-separated list, `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}
