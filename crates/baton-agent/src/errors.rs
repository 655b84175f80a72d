//! How the agent words a failure for the person reading its log or status: the innermost
//! cause of an error chain ("Connection refused") says the most.

/// The innermost cause of an error ("Connection refused"), which says the most.
pub fn innermost(e: &dyn std::error::Error) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}
