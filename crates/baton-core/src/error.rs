//! The server's one error type. Domain modules return it; the HTTP edge turns it into
//! `application/problem+json` once (`http::problem`), and later transports map it their own way.

use baton_proto::api::problem::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or exists in another tenant (the two look the same).
    #[error("{0} not found")]
    NotFound(String),
    /// The request clashes with the current state (a duplicate name, a device not yet decommissioned).
    #[error("{0}")]
    Conflict(String),
    /// The input is malformed or breaks a rule; `errors` names the fields.
    #[error("{detail}")]
    Invalid { detail: String, errors: Vec<FieldError> },
    /// No credentials, or credentials that are wrong, expired or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; try again after the given number of seconds.
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
    /// Settings that cannot work; the message says which and why.
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// Invalid input in one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Invalid {
            detail: format!("{field}: {message}"),
            errors: vec![FieldError { field: field.to_owned(), message }],
        }
    }

    /// Whether a database error is a unique-constraint violation.
    pub fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
    }

    /// Maps a unique violation to a conflict with `message`; other errors pass through.
    pub fn conflict_on_unique(message: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        let message = message.into();
        move |e| {
            if Self::is_unique_violation(&e) { Self::Conflict(message) } else { Self::Database(e) }
        }
    }
}

/// Collects field errors, then fails once with all of them.
#[derive(Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    pub fn check(&mut self, field: &str, result: Result<(), impl ToString>) {
        if let Err(e) = result {
            self.add(field, e.to_string());
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let detail = self.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Err(Error::Invalid { detail, errors: self.0 })
    }
}
