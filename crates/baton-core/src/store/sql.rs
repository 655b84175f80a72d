//! A tiny builder for SQL whose shape depends on input (filters, cursors, lists of ids, many
//! rows per statement). Values are always bound, never spliced into the text.
//!
//! The placeholders are each engine's own: numbered `$n` for PostgreSQL, plain `?` for SQLite.
//! SQLite accepts `$n` too, but keeps such names in a list it searches linearly, once per
//! placeholder when the statement is prepared and again when each value is bound: a statement
//! with thousands of values (500 events of 6 columns) spent most of a fan-out's CPU there. A
//! plain `?` is numbered as it is read and bound by position, at no search.

use sqlx::{Any, AnyConnection, AssertSqlSafe, any::AnyArguments, query::Query};

use super::Backend;

/// A bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
    Float(f64),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

/// SQL text plus the values for its placeholders.
#[derive(Debug, Default, Clone)]
pub struct Sql {
    /// With PostgreSQL's placeholders (`$1`, `$2`, …).
    text: String,
    /// The same with SQLite's (`?`, bound in order).
    positional: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self { text: text.to_owned(), positional: text.to_owned(), args: Vec::new() }
    }

    /// Appends literal SQL.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self.positional.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self.positional.push('?');
        self
    }

    /// Appends `(v1, v2, …)` with every value bound.
    pub fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")");
        self
    }

    /// The text with PostgreSQL's numbered placeholders.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The statement for `backend`, ready to run.
    pub fn query(&self, backend: Backend) -> Query<'_, Any, AnyArguments> {
        let text = match backend {
            Backend::Postgres => &self.text,
            Backend::Sqlite => &self.positional,
        };
        // Safe: the text is built from literals only; every value is a bound argument.
        let mut q = sqlx::query(AssertSqlSafe(text.clone()));
        for arg in &self.args {
            q = match arg {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Float(f) => q.bind(*f),
            };
        }
        q
    }

    /// The statement for the engine behind `connection` (a transaction's, say).
    pub fn query_on(&self, connection: &AnyConnection) -> Query<'_, Any, AnyArguments> {
        self.query(Backend::of(connection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_engine_gets_its_own_placeholders_in_the_order_bound() {
        let mut sql = Sql::new("SELECT * FROM t WHERE a = ");
        sql.bind(1_i64).push(" AND b IN ").bind_list(["x", "y"]);
        assert_eq!(sql.text(), "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
        assert_eq!(sql.positional, "SELECT * FROM t WHERE a = ? AND b IN (?, ?)");
        assert_eq!(sql.args.len(), 3);
    }
}
