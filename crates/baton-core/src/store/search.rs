//! Free-text search shared by the lists that offer it (devices, groups): the filter a user types,
//! checked and lowercased, and the `LIKE` pattern that finds it anywhere in a row's search key.

use crate::Error;

/// A free-text filter, checked: bounded, no control characters (PostgreSQL refuses NUL).
pub fn text_filter(field: &str, text: &str) -> Result<String, Error> {
    if text.chars().count() > 128 || text.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must be at most 128 characters, without control characters"));
    }
    Ok(text.to_lowercase())
}

/// A LIKE pattern matching `text` anywhere, with `\` escaping the wildcards.
pub fn contains_pattern(text: &str) -> String {
    format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}
