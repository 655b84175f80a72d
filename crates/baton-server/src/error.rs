//! The server crate's one error type: the core's errors, answered by the doors (as
//! problem+json at the HTTP edge, `web::problem`; as reason codes over MQTT). A wrapper rather
//! than a second enum, so `?` carries any core error through a handler unchanged.

use std::fmt;

/// An error a door answers; `?` turns any core error (or what the core's error takes) into one.
pub struct Error(pub baton_core::Error);

impl<E: Into<baton_core::Error>> From<E> for Error {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
