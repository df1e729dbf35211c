//! Keyset pagination shared by every list: a WHERE clause built from
//! filters, and pages walked forwards or back from an id.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::rows::{APP_COLS, ATTEMPT_COLS, EP_COLS, ET_COLS, MSG_COLS, ms};
use crate::{AttemptFilter, MessageFilter, Order, Page, PageRequest, Result};

/// A WHERE clause under construction, with its positional parameters.
#[derive(Default)]
pub(crate) struct Filter {
    pub(crate) clauses: Vec<String>,
    pub(crate) params: Vec<Value>,
}

impl Filter {
    pub(crate) fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Value>) {
        self.clauses.push(clause.to_owned());
        self.params.extend(values);
    }

    pub(crate) fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let marks = vec!["?"; values.len()].join(",");
        self.push(
            &format!("{column} IN ({marks})"),
            values.iter().map(|v| Value::Text(v.clone())),
        );
    }

    pub(crate) fn time_range(&mut self, column: &str, before: Option<DateTime<Utc>>, after: Option<DateTime<Utc>>) {
        if let Some(b) = before {
            self.push(&format!("{column} < ?"), [Value::Integer(ms(b))]);
        }
        if let Some(a) = after {
            self.push(&format!("{column} > ?"), [Value::Integer(ms(a))]);
        }
    }
}

/// What a list query selects, from where, keyed on which id column (ids sort
/// by creation time, so the key orders by age).
pub(crate) struct Listing {
    pub(crate) cols: &'static str,
    pub(crate) from: &'static str,
    pub(crate) key: &'static str,
}

pub(crate) const APPS: Listing = Listing {
    cols: APP_COLS,
    from: "application",
    key: "id",
};
pub(crate) const ENDPOINTS: Listing = Listing {
    cols: EP_COLS,
    from: "endpoint",
    key: "id",
};
pub(crate) const EVENT_TYPES: Listing = Listing {
    cols: ET_COLS,
    from: "event_type",
    key: "name",
};
pub(crate) const MESSAGES: Listing = Listing {
    cols: MSG_COLS,
    from: "message m",
    key: "m.id",
};
pub(crate) const ATTEMPTS: Listing = Listing {
    cols: ATTEMPT_COLS,
    from: "attempt a",
    key: "a.id",
};

/// Runs `SELECT {cols} FROM {from} WHERE {filter} ORDER BY {key}` one page at
/// a time.
pub(crate) fn paginate<T>(
    conn: &Connection,
    Listing { cols, from, key }: &Listing,
    mut filter: Filter,
    page: &PageRequest,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
    id_of: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let limit = page.limit.clamp(1, 250);
    let (backwards, cursor) = match page.iterator.as_deref() {
        Some(it) if it.starts_with('-') => (true, Some(it[1..].to_owned())),
        Some(it) if !it.is_empty() => (false, Some(it.to_owned())),
        _ => (false, None),
    };
    let ascending = (page.order == Order::Ascending) != backwards;
    if let Some(c) = &cursor {
        filter.push(
            &format!("{key} {} ?", if ascending { ">" } else { "<" }),
            [Value::Text(c.clone())],
        );
    }
    let where_sql = if filter.clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", filter.clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {cols} FROM {from} {where_sql} ORDER BY {key} {} LIMIT {}",
        if ascending { "ASC" } else { "DESC" },
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut data = stmt
        .query_map(rusqlite::params_from_iter(filter.params.iter()), &map)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    let more = data.len() > limit;
    data.truncate(limit);
    if backwards {
        data.reverse();
    }
    let iterator = data
        .last()
        .map(&id_of)
        .or_else(|| if backwards { cursor.clone() } else { None });
    let prev_iterator = data.first().map(|t| format!("-{}", id_of(t)));
    // "done": nothing further in the direction of travel.
    let done = !more;
    Ok(Page {
        data,
        iterator,
        prev_iterator,
        done,
    })
}

/// The clauses of a [`MessageFilter`] on the messages aliased `m`.
pub(crate) fn message_filter(f: &mut Filter, filter: MessageFilter) {
    f.any_of("m.event_type", &filter.event_types);
    f.time_range("m.created_at", filter.before, filter.after);
    if let Some(ch) = filter.channel {
        f.push(
            "EXISTS (SELECT 1 FROM json_each(m.channels) WHERE value = ?)",
            [Value::Text(ch)],
        );
    }
    if let Some(tag) = filter.tag {
        f.push(
            "EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)",
            [Value::Text(tag)],
        );
    }
}

pub(crate) fn attempt_filter(filter: AttemptFilter) -> Filter {
    let mut f = Filter::default();
    if let Some(s) = filter.status {
        f.push("a.status = ?", [Value::Integer(s.code())]);
    }
    if let Some(class) = filter.status_code_class {
        let lo = i64::from(class);
        let hi = if class == 0 { 100 } else { lo + 100 };
        f.push(
            "a.status_code >= ? AND a.status_code < ?",
            [Value::Integer(lo), Value::Integer(hi)],
        );
    }
    f.time_range("a.created_at", filter.before, filter.after);
    if let Some(ep) = filter.endpoint_id {
        f.push("a.endpoint_id = ?", [Value::Text(ep)]);
    }
    if !filter.event_types.is_empty() || filter.channel.is_some() || filter.tag.is_some() {
        let mut sub = Filter::default();
        message_filter(
            &mut sub,
            MessageFilter {
                event_types: filter.event_types,
                channel: filter.channel,
                tag: filter.tag,
                ..MessageFilter::default()
            },
        );
        f.push(
            &format!(
                "EXISTS (SELECT 1 FROM message m WHERE m.app_id = a.app_id AND m.id = a.msg_id AND {})",
                sub.clauses.join(" AND ")
            ),
            sub.params,
        );
    }
    f
}
