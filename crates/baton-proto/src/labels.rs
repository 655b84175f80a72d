//! Labels (`key=value` tags on devices) and label selectors (`store=berlin-12,tier!=test`).
//!
//! The grammar follows Kubernetes, which most operators already know:
//! `key`, `!key`, `key=value` (or `==`), `key!=value`, `key in (a,b)`, `key notin (a,b)`,
//! joined by commas; every requirement must hold. `key!=value` and `notin` also match devices
//! that do not carry the key at all.

use std::fmt;

/// Longest label key, in bytes.
pub const MAX_KEY_LEN: usize = 63;
/// Longest label value, in bytes.
pub const MAX_VALUE_LEN: usize = 128;
/// Most labels one device may carry.
pub const MAX_LABELS: usize = 64;
/// Most requirements in one selector, and values in one `in` list.
pub const MAX_REQUIREMENTS: usize = 32;
pub const MAX_SET_VALUES: usize = 100;

/// Why a label or a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError(pub String);

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LabelError {}

/// Checks a label key: 1–63 bytes of letters, digits, `.`, `_`, `-` and `/`, starting and ending
/// with a letter or digit.
pub fn validate_key(key: &str) -> Result<(), LabelError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LabelError(format!("label key `{key}` must be 1 to {MAX_KEY_LEN} characters")));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let body_ok = key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !body_ok || !edge_ok(key.chars().next()) || !edge_ok(key.chars().last()) {
        return Err(LabelError(format!(
            "label key `{key}` may hold only letters, digits, `.`, `_`, `-`, `/` and must start and end with a letter or digit"
        )));
    }
    Ok(())
}

/// Checks a label value: up to 128 bytes of letters, digits and `.`, `_`, `-`, `/`, `:`, `@`, `+`.
pub fn validate_value(value: &str) -> Result<(), LabelError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(LabelError(format!("label value must be at most {MAX_VALUE_LEN} characters")));
    }
    let ok = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '+'));
    if !ok {
        return Err(LabelError(format!("label value `{value}` may hold only letters, digits and `. _ - / : @ +`")));
    }
    Ok(())
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    /// Parses `store=berlin-12,tier!=test,env in (prod,staging),!legacy`.
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let mut requirements = Vec::new();
        let parts = split_top_level(text)?;
        if parts.len() > MAX_REQUIREMENTS {
            return Err(LabelError(format!("a selector has at most {MAX_REQUIREMENTS} requirements")));
        }
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                return Err(LabelError(format!("empty requirement in selector `{text}`")));
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        })
    }
}

fn split_top_level(text: &str) -> Result<Vec<&str>, LabelError> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(LabelError(format!("unbalanced parentheses in selector `{text}`")));
        }
    }
    if depth != 0 {
        return Err(LabelError(format!("unbalanced parentheses in selector `{text}`")));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn parse_requirement(part: &str) -> Result<Requirement, LabelError> {
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        validate_key(key)?;
        return Ok(Requirement::NotExists(key.to_owned()));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return pair(key, value).map(|(k, v)| Requirement::NotEquals(k, v));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return pair(key, value).map(|(k, v)| Requirement::Equals(k, v));
    }
    if let Some((key, rest)) = split_keyword(part, " notin ") {
        return set(key, rest).map(|(k, vs)| Requirement::NotIn(k, vs));
    }
    if let Some((key, rest)) = split_keyword(part, " in ") {
        return set(key, rest).map(|(k, vs)| Requirement::In(k, vs));
    }
    validate_key(part)?;
    Ok(Requirement::Exists(part.to_owned()))
}

fn split_keyword<'a>(part: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    part.find(keyword).map(|i| (&part[..i], &part[i + keyword.len()..]))
}

fn pair(key: &str, value: &str) -> Result<(String, String), LabelError> {
    let (key, value) = (key.trim(), value.trim());
    validate_key(key)?;
    validate_value(value)?;
    Ok((key.to_owned(), value.to_owned()))
}

fn set(key: &str, rest: &str) -> Result<(String, Vec<String>), LabelError> {
    let key = key.trim();
    validate_key(key)?;
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| LabelError(format!("`{key} in` needs a list in parentheses, like `(a,b)`")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    if values.len() > MAX_SET_VALUES {
        return Err(LabelError(format!("a list has at most {MAX_SET_VALUES} values")));
    }
    for v in &values {
        if v.is_empty() {
            return Err(LabelError(format!("empty value in the list for `{key}`")));
        }
        validate_value(v)?;
    }
    Ok((key.to_owned(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    #[test]
    fn a_selector_with_every_operator_parses_and_matches() {
        let s = Selector::parse("store=berlin-12,tier!=test,env in (prod, staging),!legacy,pos").expect("parses");
        assert_eq!(s.requirements.len(), 5);
        let device = [("store", "berlin-12"), ("env", "prod"), ("pos", "")];
        assert!(s.matches(labels(&device)));
        let test_device = [("store", "berlin-12"), ("env", "prod"), ("pos", ""), ("tier", "test")];
        assert!(!s.matches(labels(&test_device)));
    }

    #[test]
    fn not_equals_matches_devices_without_the_key() {
        let s = Selector::parse("tier!=test").expect("parses");
        assert!(s.matches(labels(&[])));
    }

    #[test]
    fn selectors_that_do_not_parse_are_refused() {
        let too_many = vec!["a"; MAX_REQUIREMENTS + 1].join(",");
        let too_long = format!("a in ({})", vec!["x"; MAX_SET_VALUES + 1].join(","));
        for bad in
            ["", "a=b,", "=x", "a in b", "a in (b", "a=(x)", "bad key=1", "k=v v", "a in ()", &too_many, &too_long]
        {
            assert!(Selector::parse(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn a_key_longer_than_63_bytes_is_refused() {
        assert!(validate_key(&"k".repeat(64)).is_err());
        assert!(validate_key(&"k".repeat(63)).is_ok());
    }
}
