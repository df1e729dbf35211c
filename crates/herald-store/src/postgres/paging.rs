//! Keyset pagination shared by every list: a WHERE clause built from
//! filters, and pages walked forwards or back from an id. The same walk as
//! the SQLite store's, so both answer a page request alike.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::rows::{APP_COLS, ATTEMPT_COLS, EP_COLS, ET_COLS, MSG_COLS, ms};
use crate::{AttemptFilter, MessageFilter, Order, Page, PageRequest, Result};

/// A parameter of a built statement.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A WHERE clause under construction, with its parameters. Clauses mark
/// each parameter's place with `$?`; they are numbered when the statement
/// is built, so clauses compose in any order.
#[derive(Default)]
pub(crate) struct Filter {
    pub(crate) clauses: Vec<String>,
    pub(crate) params: Vec<Param>,
}

impl Filter {
    pub(crate) fn push(&mut self, clause: &str, values: impl IntoIterator<Item = Param>) {
        self.clauses.push(clause.to_owned());
        self.params.extend(values);
    }

    pub(crate) fn any_of(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        self.push(&format!("{column} = ANY($?)"), [Box::new(values.to_vec()) as Param]);
    }

    pub(crate) fn time_range(&mut self, column: &str, before: Option<DateTime<Utc>>, after: Option<DateTime<Utc>>) {
        if let Some(b) = before {
            self.push(&format!("{column} < $?"), [Box::new(ms(b)) as Param]);
        }
        if let Some(a) = after {
            self.push(&format!("{column} > $?"), [Box::new(ms(a)) as Param]);
        }
    }

    /// `WHERE …` with its parameters numbered from `$1`, or nothing.
    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            return String::new();
        }
        number_params(&format!("WHERE {}", self.clauses.join(" AND ")), 1)
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// `sql` with each `$?` replaced by `$first`, `$first+1`, … in order.
pub(crate) fn number_params(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = first;
    let mut rest = sql;
    while let Some(at) = rest.find("$?") {
        out.push_str(&rest[..at]);
        out.push_str(&format!("${n}"));
        n += 1;
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
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
/// a time. Keys compare byte-wise: the schema's text columns are
/// `COLLATE "C"`.
pub(crate) async fn paginate<T>(
    client: &impl GenericClient,
    Listing { cols, from, key }: &Listing,
    mut filter: Filter,
    page: &PageRequest,
    map: impl Fn(&Row) -> Result<T>,
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
            &format!("{key} {} $?", if ascending { ">" } else { "<" }),
            [Box::new(c.clone()) as Param],
        );
    }
    let sql = format!(
        "SELECT {cols} FROM {from} {} ORDER BY {key} {} LIMIT {}",
        filter.where_sql(),
        if ascending { "ASC" } else { "DESC" },
        limit + 1
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &filter.params()).await?;
    let mut data = rows.iter().map(&map).collect::<Result<Vec<T>>>()?;
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

/// The clauses of a [`MessageFilter`] on the messages aliased `m`. Channels
/// and tags are JSON arrays of strings in text columns.
pub(crate) fn message_filter(f: &mut Filter, filter: MessageFilter) {
    f.any_of("m.event_type", &filter.event_types);
    f.time_range("m.created_at", filter.before, filter.after);
    if let Some(ch) = filter.channel {
        f.push(
            "m.channels::jsonb @> jsonb_build_array($?::text)",
            [Box::new(ch) as Param],
        );
    }
    if let Some(tag) = filter.tag {
        f.push("m.tags::jsonb @> jsonb_build_array($?::text)", [Box::new(tag) as Param]);
    }
}

pub(crate) fn attempt_filter(filter: AttemptFilter) -> Filter {
    let mut f = Filter::default();
    if let Some(s) = filter.status {
        f.push("a.status = $?", [Box::new(s.code()) as Param]);
    }
    if let Some(class) = filter.status_code_class {
        let lo = i64::from(class);
        let hi = if class == 0 { 100 } else { lo + 100 };
        f.push(
            "a.status_code >= $? AND a.status_code < $?",
            [Box::new(lo) as Param, Box::new(hi) as Param],
        );
    }
    f.time_range("a.created_at", filter.before, filter.after);
    if let Some(ep) = filter.endpoint_id {
        f.push("a.endpoint_id = $?", [Box::new(ep) as Param]);
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
