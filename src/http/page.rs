//! Pages over HTTP: the `{items, next_cursor}` shape of every list, and its `limit` and
//! `cursor` parameters refused with the parameter named.

use crate::paging::PageError;

use super::error::ApiError;

impl From<PageError> for ApiError {
    fn from(e: PageError) -> Self {
        let param = match e {
            PageError::Limit => "limit",
            PageError::Cursor => "cursor",
        };
        ApiError::invalid(param, e.to_string())
    }
}

/// Declares a page of `$item` for JSON and the OpenAPI document: `{items, next_cursor}`, and
/// `From<paging::Page<T>>` for any `T` that becomes an `$item`.
#[macro_export]
macro_rules! page_of {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub(crate) struct $name {
            pub items: Vec<$item>,
            /// Pass as `cursor` for the next page; absent on the last page.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub next_cursor: Option<String>,
        }

        impl<T: Into<$item>> From<$crate::paging::Page<T>> for $name {
            fn from(page: $crate::paging::Page<T>) -> Self {
                $name {
                    items: page.items.into_iter().map(Into::into).collect(),
                    next_cursor: page.next_cursor,
                }
            }
        }
    };
}
