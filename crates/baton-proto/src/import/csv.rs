//! A small CSV reader (RFC 4180): fields separated by commas, records by LF or CRLF, a field in
//! double quotes may hold commas, line breaks and doubled quotes (`""`). Blank lines are
//! skipped. Each record knows the line it starts on, so errors can name it.

use std::{iter::Peekable, str::Chars};

/// One record and the (1-based) line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Every record of `text`.
pub fn parse(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut records = Vec::new();
    while let Some(&c) = chars.peek() {
        if c == '\n' || c == '\r' {
            end_of_line(&mut chars);
            line += 1;
            continue;
        }
        let start = line;
        let mut fields = Vec::new();
        loop {
            fields.push(field(&mut chars, &mut line, start)?);
            match chars.peek() {
                Some(',') => {
                    chars.next();
                }
                Some(_) => {
                    end_of_line(&mut chars);
                    line += 1;
                    break;
                }
                None => break,
            }
        }
        records.push(Record { line: start, fields });
    }
    Ok(records)
}

/// Reads one field, leaving the separator or line break after it unread.
fn field(chars: &mut Peekable<Chars<'_>>, line: &mut usize, start: usize) -> Result<String, String> {
    let mut out = String::new();
    if chars.peek() != Some(&'"') {
        while let Some(&c) = chars.peek() {
            if matches!(c, ',' | '\n' | '\r') {
                break;
            }
            out.push(c);
            chars.next();
        }
        return Ok(out);
    }
    chars.next();
    loop {
        match chars.next() {
            None => bail!("line {start}: a quoted field is not closed (a `\"` is missing)"),
            Some('"') if chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            Some('"') => break,
            Some(c) => {
                if c == '\n' {
                    *line += 1;
                }
                out.push(c);
            }
        }
    }
    match chars.peek() {
        None | Some(',' | '\n' | '\r') => Ok(out),
        Some(_) => bail!(
            "line {line}: text after the closing quote of a field; put the whole field in quotes and double any quote inside"
        ),
    }
}

/// Consumes one LF, CRLF or lone CR.
fn end_of_line(chars: &mut Peekable<Chars<'_>>) {
    if chars.next() == Some('\r') && chars.peek() == Some(&'\n') {
        chars.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text).expect("parses").into_iter().map(|r| r.fields).collect()
    }

    #[test]
    fn plain_fields_and_empty_ones() {
        assert_eq!(fields("a,b,c\n1,,3\n"), [vec!["a", "b", "c"], vec!["1", "", "3"]]);
        assert_eq!(fields("x,"), [vec!["x", ""]]);
    }

    #[test]
    fn quoted_fields_hold_commas_doubled_quotes_and_line_breaks() {
        let got = fields("serial,name\r\nS1,\"Till 1, front\"\r\nS2,\"The \"\"big\"\" one\"\r\nS3,\"two\nlines\"\n");
        assert_eq!(got[1], ["S1", "Till 1, front"]);
        assert_eq!(got[2], ["S2", "The \"big\" one"]);
        assert_eq!(got[3], ["S3", "two\nlines"]);
        assert_eq!(fields("\"\",\"\"\n"), [vec!["", ""]]);
    }

    #[test]
    fn records_know_their_line_and_blank_lines_are_skipped() {
        let records = parse("\u{feff}h\n\nA\n\"B\nB\"\nC").expect("parses");
        let lines: Vec<usize> = records.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 4, 6]);
        assert_eq!(records[0].fields, ["h"]);
    }

    #[test]
    fn broken_quotes_name_the_line() {
        let err = parse("a,b\nc,\"open\nd\n").expect_err("unclosed").to_string();
        assert!(err.starts_with("line 2:") && err.contains("not closed"), "{err}");
        let err = parse("a,b\n\"x\"y,z\n").expect_err("text after the quote").to_string();
        assert!(err.starts_with("line 2:") && err.contains("after the closing quote"), "{err}");
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_kept() {
        assert_eq!(fields("5\" screen,b\n"), [vec!["5\" screen", "b"]]);
    }
}
