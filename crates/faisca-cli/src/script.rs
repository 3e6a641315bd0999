//! Splitting a SQL script into statements.

/// Split `text` at semicolons that are outside quotes (`'...'`, `"..."`) and comments
/// (`-- ...`, `/* ... */`). Empty statements are dropped; statements keep their comments.
pub fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                current.push(c);
                while let Some(d) = chars.next() {
                    current.push(d);
                    if d == c {
                        // A doubled quote is an escaped quote inside the string.
                        if chars.peek() == Some(&c) {
                            current.push(chars.next().expect("peeked"));
                            continue;
                        }
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                current.push(c);
                for d in chars.by_ref() {
                    current.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                current.push(c);
                current.push(chars.next().expect("peeked"));
                let mut prev = '\0';
                for d in chars.by_ref() {
                    current.push(d);
                    if prev == '*' && d == '/' {
                        break;
                    }
                    prev = d;
                }
            }
            ';' => {
                push_statement(&mut out, &current);
                current.clear();
            }
            _ => current.push(c),
        }
    }
    push_statement(&mut out, &current);
    out
}

fn push_statement(out: &mut Vec<String>, text: &str) {
    if has_code(text) {
        out.push(text.trim().to_string());
    }
}

/// Whether `text` holds anything but whitespace and comments.
fn has_code(text: &str) -> bool {
    let mut rest = text.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_start();
        } else {
            return !rest.is_empty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = "CREATE TABLE t AS SELECT ';' AS a; -- a comment; still comment\nSELECT \"x;y\" FROM t /* ; */ ;;\n-- only a comment\n";
        assert_eq!(
            split_statements(s),
            vec![
                "CREATE TABLE t AS SELECT ';' AS a",
                "-- a comment; still comment\nSELECT \"x;y\" FROM t /* ; */"
            ]
        );
    }

    #[test]
    fn escaped_quotes() {
        assert_eq!(
            split_statements("SELECT 'it''s; fine'; SELECT 2"),
            vec!["SELECT 'it''s; fine'", "SELECT 2"]
        );
    }

    #[test]
    fn nothing() {
        assert!(split_statements("  ; -- x\n /* y */ ").is_empty());
    }
}
