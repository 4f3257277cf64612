//! Pages of a list: every list answers `{items, next_cursor}` and takes `limit` and `cursor`.
//!
//! A cursor is the keyset position of the last item of a page (its sort key and id, say),
//! written as URL-safe base64 of JSON so clients treat it as opaque and the server can change
//! what it holds. Keyset pages stay as fast on the millionth row as on the first (no `OFFSET`)
//! and do not skip or repeat rows when rows are added between two pages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

/// A page's size when the client names none.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: i64 = 1000;

/// A client's `limit` or `cursor` that cannot be used; the HTTP layer names the parameter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    #[error("limit must be between 1 and {MAX_LIMIT}")]
    Limit,
    #[error("cursor is not one this list gave out; start again without it")]
    Cursor,
}

/// A page request, checked: `limit` in range, `cursor` decoded into the list's key `K`.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    pub limit: i64,
    pub after: Option<K>,
}

impl<K: DeserializeOwned> PageRequest<K> {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, PageError> {
        let limit = match limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => n,
            _ => return Err(PageError::Limit),
        };
        let after = cursor.map(decode).transpose()?;
        Ok(PageRequest { limit, after })
    }

    /// How many rows to fetch: one more than a page tells whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// One page of items and, unless it is the last, the cursor of the next.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from rows fetched with [`PageRequest::fetch`]: cuts the extra row, and when there
    /// was one, gives the cursor of the page's last item.
    pub fn of<K: Serialize>(mut rows: Vec<T>, request: &PageRequest<impl Sized>, key: impl Fn(&T) -> K) -> Page<T> {
        let more = rows.len() as i64 > request.limit;
        rows.truncate(request.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| encode(&key(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// The key of a newest-first list: the last row's `(created_at, id)`.
pub type NewestFirst = (DateTime<Utc>, Uuid);

/// Ends a newest-first list's query (its conditions so far follow a `where`): the rows after
/// `after`, newest first, `fetch` of them. One place for the keyset every such list shares.
pub fn push_newest_first(q: &mut QueryBuilder<'_, Postgres>, after: Option<NewestFirst>, fetch: i64) {
    if let Some((at, id)) = after {
        q.push(" and (created_at, id) < (")
            .push_bind(at)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    q.push(" order by created_at desc, id desc limit ").push_bind(fetch);
}

/// A cursor for a key.
pub fn encode<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("a cursor key serialises"))
}

/// The key in a cursor, or [`PageError::Cursor`] for one this service did not write.
pub fn decode<K: DeserializeOwned>(cursor: &str) -> Result<K, PageError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| PageError::Cursor)?;
    serde_json::from_slice(&bytes).map_err(|_| PageError::Cursor)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_cursor_gives_back_its_key() {
        let key = (
            DateTime::<Utc>::from_timestamp(1_700_000_000, 123_000).unwrap(),
            Uuid::new_v4(),
        );
        assert_eq!(decode::<(DateTime<Utc>, Uuid)>(&encode(&key)), Ok(key));
    }

    #[test]
    fn a_foreign_cursor_is_refused() {
        assert_eq!(decode::<i64>("not base64!"), Err(PageError::Cursor));
        assert_eq!(decode::<i64>(&encode(&"a string")), Err(PageError::Cursor));
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(PageRequest::<i64>::parse(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(PageRequest::<i64>::parse(Some(0), None).unwrap_err(), PageError::Limit);
        assert_eq!(
            PageRequest::<i64>::parse(Some(1001), None).unwrap_err(),
            PageError::Limit
        );
        assert_eq!(PageRequest::<i64>::parse(Some(1000), None).unwrap().limit, 1000);
    }

    #[test]
    fn a_page_holds_the_cursor_only_when_more_follow() {
        let request = PageRequest::<i64>::parse(Some(2), None).unwrap();
        let page = Page::of(vec![1_i64, 2, 3], &request, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(decode::<i64>(page.next_cursor.as_deref().unwrap()), Ok(2));
        let last = Page::of(vec![1_i64, 2], &request, |n| *n);
        assert_eq!(last.next_cursor, None);
    }
}
