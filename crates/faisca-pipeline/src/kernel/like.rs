//! `LIKE` kernels: patterns of literal text and `%` wildcards, matched by prefix, suffix and
//! substring searches in order (no regular expression, which is what Arrow's kernel falls back
//! to for patterns with more than one inner `%`, such as TPC-H Q13's `'%special%requests%'`).
//!
//! Patterns with `_` or `\` (single-character wildcards, escapes) are not compiled, nor is
//! `ILIKE`: those keep DataFusion's operator. Semantics are SQL's (and Arrow's): a null value
//! gives null, `%` matches any run of characters (newlines included), the match is of the
//! whole value and byte-wise, which for UTF-8 text and literal parts is character-wise.

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::DataType;
use memchr::memmem::Finder;

/// A compiled `LIKE` pattern.
#[derive(Debug, Clone)]
pub struct LikePattern {
    /// The literal text before the first `%` (the whole pattern when there is none).
    prefix: Vec<u8>,
    /// The literal text after the last `%`.
    suffix: Vec<u8>,
    /// The non-empty texts between `%`s, to be found in order.
    inner: Vec<Finder<'static>>,
    /// Whether the pattern has a `%` at all (otherwise it is an equality).
    wildcard: bool,
    /// The first (up to four) bytes of `prefix` as a little-endian word, and the mask of the
    /// bytes that count: compared with the prefix an Arrow string view carries inline.
    head: u32,
    head_mask: u32,
}

impl LikePattern {
    /// The pattern `text`, or `None` if it uses `_` or `\`.
    pub fn parse(text: &str) -> Option<LikePattern> {
        if text.contains(['_', '\\']) {
            return None;
        }
        let parts: Vec<&str> = text.split('%').collect();
        let wildcard = parts.len() > 1;
        let prefix = parts[0].as_bytes().to_vec();
        let suffix = if wildcard {
            parts[parts.len() - 1].as_bytes().to_vec()
        } else {
            Vec::new()
        };
        let inner = if wildcard {
            parts[1..parts.len() - 1]
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| Finder::new(p.as_bytes()).into_owned())
                .collect()
        } else {
            Vec::new()
        };
        let mut head_bytes = [0u8; 4];
        let mut mask_bytes = [0u8; 4];
        for (k, b) in prefix.iter().take(4).enumerate() {
            head_bytes[k] = *b;
            mask_bytes[k] = 0xff;
        }
        Some(LikePattern {
            prefix,
            suffix,
            inner,
            wildcard,
            head: u32::from_le_bytes(head_bytes),
            head_mask: u32::from_le_bytes(mask_bytes),
        })
    }

    /// Whether an Arrow string view (length in the low 32 bits, then the string's first four
    /// bytes) already shows that its string cannot match, without reading the string.
    #[inline]
    pub fn view_rejects(&self, view: u128) -> bool {
        let len = view as u32 as usize;
        let too_short = if self.wildcard {
            len < self.prefix.len() + self.suffix.len()
        } else {
            len != self.prefix.len()
        };
        too_short || ((view >> 32) as u32) & self.head_mask != self.head
    }

    /// Whether `value` matches.
    #[inline]
    pub fn matches(&self, value: &[u8]) -> bool {
        if !self.wildcard {
            return value == self.prefix.as_slice();
        }
        // (Empty ends are skipped: comparing even an empty slice calls `memcmp`.)
        if value.len() < self.prefix.len() + self.suffix.len()
            || (!self.prefix.is_empty() && !value.starts_with(&self.prefix))
            || (!self.suffix.is_empty() && !value.ends_with(&self.suffix))
        {
            return false;
        }
        let mut rest = &value[self.prefix.len()..value.len() - self.suffix.len()];
        for finder in &self.inner {
            match finder.find(rest) {
                Some(at) => rest = &rest[at + finder.needle().len()..],
                None => return false,
            }
        }
        true
    }
}

/// Whether values of `data_type` can be matched.
pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Calls `f(i, value)` for row `i` of a text `array`: `Some(bytes)`, or `None` for a null.
/// Returns `false` (having called nothing) when `array` is not text.
#[inline]
pub fn with_text_rows(
    array: &dyn Array,
    rows: impl Iterator<Item = usize>,
    mut f: impl FnMut(usize, Option<&[u8]>),
) -> bool {
    macro_rules! each {
        ($a:expr) => {{
            let a = $a;
            for i in rows {
                f(i, a.is_valid(i).then(|| a.value(i).as_bytes()));
            }
        }};
    }
    match array.data_type() {
        DataType::Utf8 => each!(array.as_string::<i32>()),
        DataType::LargeUtf8 => each!(array.as_string::<i64>()),
        DataType::Utf8View => each!(array.as_string_view()),
        _ => return false,
    }
    true
}

/// Calls `f(i, matched)` for each non-null row `i` of `rows` of a text `array`. Returns
/// `false` (having called nothing) when `array` is not text. String views are checked first by
/// their length and inline prefix, so most rows a prefix pattern rejects are never read.
#[inline]
pub fn match_rows(
    array: &dyn Array,
    rows: impl Iterator<Item = usize>,
    pattern: &LikePattern,
    mut f: impl FnMut(usize, bool),
) -> bool {
    if let DataType::Utf8View = array.data_type() {
        let a = array.as_string_view();
        let views = a.views();
        for i in rows {
            if a.is_valid(i) {
                f(
                    i,
                    !pattern.view_rejects(views[i]) && pattern.matches(a.value(i).as_bytes()),
                );
            }
        }
        return true;
    }
    with_text_rows(array, rows, |i, v| {
        if let Some(v) = v {
            f(i, pattern.matches(v))
        }
    })
}

/// The three-valued truth of `value LIKE pattern` (or `NOT LIKE` when `negated`) for every
/// row of a text `array`.
pub fn truth(array: &dyn Array, pattern: &LikePattern, negated: bool) -> Option<BooleanArray> {
    let mut out = Vec::with_capacity(array.len());
    with_text_rows(array, 0..array.len(), |_, v| {
        out.push(v.map(|v| pattern.matches(v) != negated))
    })
    .then(|| BooleanArray::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_sql_like_does() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("", "", true),
            ("%", "", true),
            ("%", "anything\nat all", true),
            ("ab%", "abc", true),
            ("ab%", "a", false),
            ("%bc", "abc", true),
            ("%bc", "abcd", false),
            ("%b%", "abc", true),
            ("%b%", "ac", false),
            ("a%c", "ac", true),
            ("a%c", "abbbc", true),
            ("a%a", "a", false),
            ("aa%aa", "aaa", false),
            ("aa%aa", "aaaa", true),
            ("%special%requests%", "xx special yy requests zz", true),
            ("%special%requests%", "requests then special", false),
            ("%special%requests%", "specialrequests", true),
            ("%ab%ab%", "ab", false),
            ("%ab%ab%", "abab", true),
            ("%Customer%Complaints%", "Customer Complaints", true),
            ("x%%y", "xy", true),
            ("é%ñ", "éaañ", true),
        ];
        for (pattern, value, expected) in cases {
            let p = LikePattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(value.as_bytes()),
                *expected,
                "{value:?} LIKE {pattern:?}"
            );
        }
        // A view's verdict never contradicts the full match.
        let values = arrow::array::StringViewArray::from_iter_values(
            cases
                .iter()
                .map(|(_, v, _)| *v)
                .chain(["a long value past twelve bytes", "abcd"]),
        );
        for (pattern, _, _) in cases {
            let p = LikePattern::parse(pattern).unwrap();
            for (i, view) in values.views().iter().enumerate() {
                if p.view_rejects(*view) {
                    assert!(!p.matches(values.value(i).as_bytes()), "{pattern:?}");
                }
            }
        }
        assert!(LikePattern::parse("a_c").is_none());
        assert!(LikePattern::parse("a\\%").is_none());
    }

    #[test]
    fn truth_agrees_with_arrows_like_kernel_and_keeps_nulls() {
        let values = arrow::array::StringArray::from(vec![
            Some("PROMO BRUSHED"),
            None,
            Some("STANDARD PROMO"),
            Some(""),
            Some("a special and requests"),
        ]);
        for pattern in ["PROMO%", "%PROMO", "%PROMO%", "%special%requests%", "%", ""] {
            let p = LikePattern::parse(pattern).unwrap();
            for negated in [false, true] {
                let ours = truth(&values, &p, negated).unwrap();
                let scalar = arrow::array::StringArray::new_scalar(pattern);
                let arrow = if negated {
                    arrow::compute::kernels::comparison::nlike(&values, &scalar).unwrap()
                } else {
                    arrow::compute::kernels::comparison::like(&values, &scalar).unwrap()
                };
                assert_eq!(ours, arrow, "LIKE {pattern:?}, negated {negated}");
            }
        }
    }
}
