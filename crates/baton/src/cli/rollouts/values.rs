//! How `baton rollouts create` reads the values it takes as text rather than through clap:
//! shares, durations and a shell-quoted command line. Each error is one line naming its flag,
//! where clap would print a usage block.

use crate::cli::telemetry::parse_duration;

/// An optional flag's text read by `parse`, which names `flag` when the text is wrong.
pub(super) fn read<T>(
    text: &Option<String>,
    flag: &str,
    parse: fn(&str, &str) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    text.as_deref().map(|t| parse(flag, t)).transpose()
}

/// A share above 0 and up to 100, as `20` or `20%`.
pub(super) fn percent(flag: &str, text: &str) -> anyhow::Result<f64> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => anyhow::bail!("{flag}: `{text}` is not a share: give a number above 0 and up to 100, like `20` or `20%`"),
    }
}

/// Seconds, as a bare number (`90`, `0`) or a duration with a unit (`10m`, `2h`).
pub(super) fn secs(flag: &str, text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    parse_duration(text).map(|d| d.as_secs()).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// Splits a command line into words as a POSIX shell does: blanks separate words, single quotes
/// keep everything, double quotes keep all but `\"` and `\\`, a backslash outside quotes escapes.
pub(super) fn split_words(flag: &str, line: &str) -> anyhow::Result<Vec<String>> {
    let (mut words, mut word, mut in_word, mut quote) = (Vec::new(), String::new(), false, None);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => match chars.next() {
                Some(e @ ('"' | '\\')) => word.push(e),
                Some(e) => word.extend(['\\', e]),
                None => break,
            },
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, in_word) = (Some(c), true),
            (None, '\\') => {
                let escaped = chars.next();
                anyhow::ensure!(escaped.is_some(), "{flag}: `{line}` ends with a lone `\\`");
                word.extend(escaped);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if std::mem::take(&mut in_word) {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    anyhow::ensure!(quote.is_none(), "{flag}: a quote in `{line}` is not closed");
    if in_word {
        words.push(word);
    }
    anyhow::ensure!(!words.is_empty(), "{flag}: give the installer, e.g. 'dpkg -i {{file}}'");
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_line_splits_into_words_like_a_shell_would() {
        let words = split_words("-c", r#"sh -c 'dpkg -i "{file}"' --x="a b" c\ d "q\"q""#).expect("words");
        assert_eq!(words, ["sh", "-c", r#"dpkg -i "{file}""#, "--x=a b", "c d", r#"q"q"#]);
        assert_eq!(split_words("-c", "  a  ''  b ").expect("words"), ["a", "", "b"]);
        assert!(split_words("-c", "dpkg -i 'oops").expect_err("open quote").to_string().contains("not closed"));
        assert!(split_words("-c", "   ").is_err());
    }

    #[test]
    fn shares_and_durations_name_the_flag_when_wrong() {
        assert_eq!(percent("--fail-percent", "12.5%").ok(), Some(12.5));
        assert_eq!(secs("--bake", "90").ok(), Some(90));
        assert_eq!(secs("--bake", "10m").ok(), Some(600));
        assert_eq!(secs("--bake", "0").ok(), Some(0));
        let wrong = percent("--fail-percent", "0").expect_err("zero").to_string();
        assert!(wrong.starts_with("--fail-percent: `0` is not a share"), "{wrong}");
        assert!(secs("--bake", "soon").expect_err("no duration").to_string().starts_with("--bake: "));
    }
}
