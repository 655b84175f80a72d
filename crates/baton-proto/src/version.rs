//! Version ordering shared by the server (dependency and downgrade checks when a rollout is made)
//! and the agent (the same checks on the device, which has the last word). Versions are compared
//! the way people read them: `1.10` is after `1.9`, `2024.11.2` after `2024.2.30`, and a
//! pre-release (`2.0.0-rc.1`) comes before its release. Any text is a version; digits are
//! compared as numbers and everything else as text.

use std::cmp::Ordering;

/// Compares two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split_pre(a);
    let (b_core, b_pre) = split_pre(b);
    compare_parts(a_core, b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_parts(x, y),
    })
}

/// Whether `version` is inside `range`: comparisons joined by commas, e.g. `>=2.1, <3`. An
/// operator is one of `>=`, `>`, `<=`, `<`, `=`, `!=`; a bare version means `=`.
pub fn satisfies(version: &str, range: &str) -> Result<bool, String> {
    let mut all = true;
    for clause in range.split(',').map(str::trim) {
        if clause.is_empty() {
            return Err(format!("the version range `{range}` has an empty comparison"));
        }
        let (op, wanted) = ["!=", ">=", "<=", ">", "<", "="]
            .into_iter()
            .find_map(|op| clause.strip_prefix(op).map(|rest| (op, rest.trim())))
            .unwrap_or(("=", clause));
        if wanted.is_empty() {
            return Err(format!("`{clause}` in `{range}` names no version"));
        }
        let order = compare(version, wanted);
        all &= match op {
            ">=" => order != Ordering::Less,
            ">" => order == Ordering::Greater,
            "<=" => order != Ordering::Greater,
            "<" => order == Ordering::Less,
            "!=" => order != Ordering::Equal,
            _ => order == Ordering::Equal,
        };
    }
    Ok(all)
}

/// The part before the first `-` (and without `+build`), and the pre-release after it.
fn split_pre(v: &str) -> (&str, Option<&str>) {
    let v = v.trim();
    let v = v.split_once('+').map_or(v, |(core, _)| core);
    let v = v.strip_prefix(['v', 'V']).filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit())).unwrap_or(v);
    match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    }
}

fn compare_parts(a: &str, b: &str) -> Ordering {
    let mut a = a.split(['.', '-', '_']);
    let mut b = b.split(['.', '-', '_']);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            // `1.0` and `1.0.0` are the same version; `1.0.1` is after `1.0`.
            (Some(x), None) => {
                return if x.chars().all(|c| c == '0') { compare_parts_rest(a) } else { Ordering::Greater };
            }
            (None, Some(y)) => {
                return if y.chars().all(|c| c == '0') { compare_parts_rest(b).reverse() } else { Ordering::Less };
            }
            (Some(x), Some(y)) => match compare_part(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

fn compare_parts_rest<'a>(mut rest: impl Iterator<Item = &'a str>) -> Ordering {
    if rest.all(|p| p.chars().all(|c| c == '0')) { Ordering::Equal } else { Ordering::Greater }
}

fn compare_part(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (numeric(x), numeric(y)) {
        (true, true) => {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        // A number sorts before text, as in semver's pre-release rules.
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_as_people_read_them() {
        let ordered =
            ["0.9", "1.0.0-rc.1", "1.0.0-rc.2", "1.0", "1.0.1", "1.2", "1.10", "v2.0.0", "2024.2.30", "2024.11.2"];
        for pair in ordered.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Ordering::Less, "{} < {}", pair[0], pair[1]);
            assert_eq!(compare(pair[1], pair[0]), Ordering::Greater, "{} > {}", pair[1], pair[0]);
        }
        assert_eq!(compare("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare("1.2.3+build.7", "1.2.3"), Ordering::Equal);
        assert_eq!(compare("01.2", "1.2"), Ordering::Equal);
    }

    #[test]
    fn ranges_hold_every_comparison() {
        assert_eq!(satisfies("2.3", ">=2.1, <3"), Ok(true));
        assert_eq!(satisfies("3.0", ">=2.1, <3"), Ok(false));
        assert_eq!(satisfies("2.0.9", ">=2.1"), Ok(false));
        assert_eq!(satisfies("1.4", "1.4"), Ok(true));
        assert_eq!(satisfies("1.4", "!=1.4"), Ok(false));
        assert!(satisfies("1.4", ">=1,").is_err());
        assert!(satisfies("1.4", ">=").is_err());
    }
}
