//! Cursor pagination. A cursor is the sort key of the last row of a page (plus its id, which
//! breaks ties), so pages stay stable while rows are added: rows inserted before the cursor are
//! not seen twice and rows after it are not skipped. The cursor is opaque to clients.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{Error, store::sql::Sql};

/// Default and largest page size.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// The position after which the next page starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// Which ordering the cursor belongs to, e.g. `name` or `-created_at`.
    pub order: String,
    /// The sort value of the last row, as text or as an integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<i64>,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor, refusing one made for another ordering.
    pub fn decode(text: &str, order: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("cursor", "is not a cursor from this list; start again without it");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.order != order {
            return Err(Error::invalid("cursor", "belongs to a different sort order"));
        }
        Ok(cursor)
    }
}

/// Where an oldest-first list (ordered by `created_at, id`) resumes: after this time and id,
/// or from the start without a cursor.
pub fn after_created(cursor: Option<&str>) -> Result<(i64, String), Error> {
    let after = cursor.map(|c| Cursor::decode(c, "created_at")).transpose()?;
    Ok(after.map(|c| (c.int.unwrap_or(0), c.id)).unwrap_or((i64::MIN, String::new())))
}

/// The cursor of a row in an oldest-first list.
pub fn created_cursor(created_at: chrono::DateTime<chrono::Utc>, id: &str) -> Cursor {
    Cursor { order: "created_at".into(), text: None, int: Some(created_at.timestamp_millis()), id: id.to_owned() }
}

/// Ends a query of a newest-first list (ordered by `created_at` then `id`, both descending):
/// after the cursor's row, at most `limit` + 1 rows, so [`finish`] can tell whether more follow.
pub fn newest_first(sql: &mut Sql, cursor: Option<&str>, limit: i64) -> Result<(), Error> {
    if let Some(c) = cursor.map(|c| Cursor::decode(c, "-created_at")).transpose()? {
        let at = c.int.ok_or_else(|| Error::invalid("cursor", "is not a cursor from this list"))?;
        sql.push(" AND (created_at < ").bind(at).push(" OR (created_at = ").bind(at);
        sql.push(" AND id < ").bind(c.id).push("))");
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").bind(limit + 1);
    Ok(())
}

/// The cursor of a row in a newest-first list.
pub fn newest_cursor(created_at: chrono::DateTime<chrono::Utc>, id: &str) -> Cursor {
    Cursor { order: "-created_at".into(), text: None, int: Some(created_at.timestamp_millis()), id: id.to_owned() }
}

/// The page size asked for, checked.
pub fn limit(requested: Option<u32>) -> Result<i64, Error> {
    match requested.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(i64::from(n)),
        _ => Err(Error::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))),
    }
}

/// Keeps `limit` rows and makes the cursor for the next page when there were more
/// (queries fetch `limit + 1` rows to know).
pub fn finish<T>(mut rows: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> Cursor) -> baton_proto::api::Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|r| cursor_of(r).encode()) } else { None };
    baton_proto::api::Page { items: rows, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_refuses_other_orders() {
        let c = Cursor { order: "name".into(), text: Some("pos-1".into()), int: None, id: "x".into() };
        assert_eq!(Cursor::decode(&c.encode(), "name").expect("decodes"), c);
        assert!(Cursor::decode(&c.encode(), "-name").is_err());
        assert!(Cursor::decode("not base64!", "name").is_err());
    }
}
