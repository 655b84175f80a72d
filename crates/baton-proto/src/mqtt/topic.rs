//! Topic names (what a PUBLISH carries), topic filters (what a SUBSCRIBE asks for) and whether a
//! filter matches a name, as MQTT defines them.

/// Longest topic Baton accepts; MQTT allows 65,535 bytes, no device needs more than this.
pub const MAX_TOPIC_BYTES: usize = 1024;

/// A topic name: non-empty, no wildcards, no NUL, within [`MAX_TOPIC_BYTES`].
pub fn valid_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_BYTES && !topic.contains(['+', '#', '\0'])
}

/// A topic filter: `+` only as a whole level, `#` only as the whole last level.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_BYTES || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Whether `filter` matches `topic`. Wildcards at the first level do not match topics that
/// start with `$` (those are the server's own).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut names = topic.split('/');
    for level in filter.split('/') {
        match (level, names.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (l, Some(n)) if l == n => {}
            _ => return false,
        }
    }
    names.next().is_none()
}
