//! A tiny builder for SQL whose shape depends on input (filters, cursors), with numbered `$n`
//! placeholders that both engines accept. Values are always bound, never spliced into the text.

use sqlx::{Any, AssertSqlSafe, any::AnyArguments, query::Query};

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
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self { text: text.to_owned(), args: Vec::new() }
    }

    /// Appends literal SQL.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `(v1, v2, …)` with every value bound.
    pub fn bind_list<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The statement, ready to run.
    pub fn query(&self) -> Query<'_, Any, AnyArguments> {
        // Safe: the text is built from literals only; every value is a bound argument.
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for arg in &self.args {
            q = match arg {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Float(f) => q.bind(*f),
            };
        }
        q
    }
}
