//! One rule for what is a secret: [`Redaction`].
//!
//! A key is secret when it matches `faisca.redaction.regex` (default [`DEFAULT_REDACTION_REGEX`]:
//! Spark's `spark.redaction.regex`, plus the Kafka and Schema Registry credentials Faísca
//! accepts). Wherever options or configuration are shown or stored — error messages, logs,
//! `faisca status`, Kafka checkpoints — the value of a secret key is replaced by [`REDACTED`];
//! [`Redaction::sql`] does the same inside statement text (`OPTIONS (…)`, `MAP(…)`, `SET`).
//! User names and mechanisms are not secrets.

use std::borrow::Cow;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use regex::Regex;

use crate::{Error, Result};

/// The default of `faisca.redaction.regex`.
pub const DEFAULT_REDACTION_REGEX: &str =
    "(?i)secret|password|token|access[.]?key|jaas|user[.]info|[.]pem$|oauthbearer[.]config";

/// What a secret value is replaced with (Spark's text).
pub const REDACTED: &str = "*********(redacted)";

/// Decides which keys are secret and masks their values.
#[derive(Debug, Clone)]
pub struct Redaction {
    keys: Regex,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::new(DEFAULT_REDACTION_REGEX).expect("the default redaction regex is valid")
    }
}

impl Redaction {
    /// The rule of `pattern`, a regular expression matched anywhere in a key. Compiled once per
    /// process and pattern (every request clones its session's configuration, and compiling
    /// costs more than the rest of an empty job's planning).
    pub fn new(pattern: &str) -> Result<Self> {
        static COMPILED: std::sync::LazyLock<
            std::sync::Mutex<std::collections::HashMap<String, Regex>>,
        > = std::sync::LazyLock::new(Default::default);
        if let Some(keys) = COMPILED.lock().ok().and_then(|c| c.get(pattern).cloned()) {
            return Ok(Redaction { keys });
        }
        Regex::new(pattern)
            .map(|keys| {
                if let Ok(mut compiled) = COMPILED.lock()
                    && compiled.len() < 64
                {
                    compiled.insert(pattern.to_string(), keys.clone());
                }
                Redaction { keys }
            })
            .map_err(|e| {
                Error::user(format!(
                    "invalid value '{pattern}' for 'faisca.redaction.regex': expected a regular expression ({e})"
                ))
            })
    }

    /// Whether `key`'s value is a secret.
    pub fn is_secret(&self, key: &str) -> bool {
        self.keys.is_match(key)
    }

    /// `value`, or [`REDACTED`] when `key` is secret.
    pub fn value<'a>(&self, key: &str, value: &'a str) -> Cow<'a, str> {
        if self.is_secret(key) {
            Cow::Borrowed(REDACTED)
        } else {
            Cow::Borrowed(value)
        }
    }

    /// `key=value` pairs joined by `, `, secret values masked (for messages).
    pub fn pairs<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", self.value(k, v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Statement text with the value of every secret key masked: `'kafka.sasl.password'
    /// 'x'` in `OPTIONS`, `'…password', 'x'` in `MAP(…)`, `SET a.b.secret = x` or `TO x`. Text
    /// that cannot be tokenized has every string literal masked when it mentions a secret key.
    pub fn sql(&self, text: &str) -> String {
        match Tokenizer::new(&GenericDialect {}, text).tokenize() {
            Ok(tokens) => self.mask_tokens(tokens),
            Err(_) => mask_all_literals(text),
        }
    }

    /// The values of secret keys in statement text (as [`Redaction::sql`] finds them), to
    /// [`scrub`] from text derived from the statement, such as its plan.
    pub fn secret_values(&self, text: &str) -> Vec<String> {
        let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else {
            return Vec::new();
        };
        self.secret_value_positions(&tokens)
            .into_iter()
            .filter_map(|i| match &tokens[i] {
                Token::SingleQuotedString(s)
                | Token::DoubleQuotedString(s)
                | Token::NationalStringLiteral(s)
                | Token::EscapedStringLiteral(s) => Some(s.clone()),
                Token::Number(n, _) => Some(n.clone()),
                Token::Word(w) => Some(w.value.clone()),
                _ => None,
            })
            .filter(|v| !v.is_empty())
            .collect()
    }

    fn mask_tokens(&self, mut tokens: Vec<Token>) -> String {
        for i in self.secret_value_positions(&tokens) {
            tokens[i] = Token::SingleQuotedString(REDACTED.to_string());
        }
        tokens.iter().map(|t| t.to_string()).collect()
    }

    /// Indexes of the tokens that are values of secret keys.
    fn secret_value_positions(&self, tokens: &[Token]) -> Vec<usize> {
        let mut found = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let (key, end) = match &tokens[i] {
                Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => (s.clone(), i + 1),
                Token::Word(_) => dotted_name(tokens, i),
                _ => {
                    i += 1;
                    continue;
                }
            };
            if self.is_secret(&key)
                && let Some(value) = value_after(tokens, end)
            {
                found.push(value);
                i = value + 1;
            } else {
                i = end;
            }
        }
        found
    }
}

impl Redaction {
    /// The values of secret keys among the literals of `plan`'s expressions, to [`scrub`] from
    /// its display: key-value lists written as `map(make_array(k…), make_array(v…))` (SQL's
    /// `MAP(…)`) or as alternating literal arguments (`make_map(k, v, …)`, `named_struct`).
    pub fn secret_values_in_plan(&self, plan: &LogicalPlan) -> Vec<String> {
        let mut found = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        self.collect_pairs(&f.args, &mut found);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        found.sort();
        found.dedup();
        found
    }

    fn collect_pairs(&self, args: &[Expr], found: &mut Vec<String>) {
        let mut push = |key: &Expr, value: &Expr| {
            if let (Some(k), Some(v)) = (string_literal(key), string_literal(value))
                && self.is_secret(&k)
                && !v.is_empty()
            {
                found.push(v);
            }
        };
        if let [Expr::ScalarFunction(keys), Expr::ScalarFunction(values)] = args
            && keys.args.len() == values.args.len()
        {
            for (k, v) in keys.args.iter().zip(&values.args) {
                push(k, v);
            }
        }
        for pair in args.chunks_exact(2) {
            push(&pair[0], &pair[1]);
        }
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _) => Some(s.clone()),
        Expr::Cast(cast) => string_literal(&cast.expr),
        Expr::TryCast(cast) => string_literal(&cast.expr),
        _ => None,
    }
}

/// `text` with every occurrence of each of `values` replaced by [`REDACTED`].
pub fn scrub(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for value in values {
        if !value.is_empty() {
            out = out.replace(value.as_str(), REDACTED);
        }
    }
    out
}

/// The name `a.b.c` of words joined by periods from `start`, and the index after it.
fn dotted_name(tokens: &[Token], start: usize) -> (String, usize) {
    let mut name = String::new();
    let mut i = start;
    while let Some(Token::Word(w)) = tokens.get(i) {
        name.push_str(&w.value);
        if matches!(tokens.get(i + 1), Some(Token::Period))
            && matches!(tokens.get(i + 2), Some(Token::Word(_)))
        {
            name.push('.');
            i += 2;
        } else {
            return (name, i + 1);
        }
    }
    (name, i)
}

/// The index of the value that follows a key ending before `from`: past whitespace and one
/// separator (`=`, `TO`, `,`, `=>`, `:`), a literal; a bare word only after `=` or `TO`.
fn value_after(tokens: &[Token], from: usize) -> Option<usize> {
    let next = |i: usize| (i..tokens.len()).find(|&j| !matches!(tokens[j], Token::Whitespace(_)));
    let mut at = next(from)?;
    let mut assigned = false;
    match &tokens[at] {
        Token::Eq | Token::RArrow | Token::Colon => {
            assigned = true;
            at = next(at + 1)?;
        }
        Token::Word(w) if w.value.eq_ignore_ascii_case("to") => {
            assigned = true;
            at = next(at + 1)?;
        }
        Token::Comma => at = next(at + 1)?,
        _ => {}
    }
    match &tokens[at] {
        Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::NationalStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::Number(..) => Some(at),
        Token::Word(_) if assigned => Some(at),
        _ => None,
    }
}

/// Every `'…'` of `text` masked (for text the tokenizer rejects).
fn mask_all_literals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_literal = false;
    for c in text.chars() {
        match (in_literal, c) {
            (false, '\'') => {
                in_literal = true;
                out.push('\'');
                out.push_str(REDACTED);
            }
            (true, '\'') => {
                in_literal = false;
                out.push('\'');
            }
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_and_not() {
        let r = Redaction::default();
        for key in [
            "kafka.sasl.password",
            "kafka.ssl.key.password",
            "kafka.sasl.jaas.config",
            "kafka.sasl.oauthbearer.config",
            "kafka.ssl.keystore.key.pem",
            "schema.registry.basic.auth.user.info",
            "faisca.store.s3.bucket.secret_access_key",
            "aws.accessKey",
            "FAISCA.STORE.S3.B.SESSION_TOKEN",
        ] {
            assert!(r.is_secret(key), "{key}");
        }
        for key in [
            "kafka.sasl.username",
            "kafka.sasl.mechanism",
            "kafka.bootstrap.servers",
            "subscribe",
            "faisca.store.s3.bucket.endpoint",
            "kafka.ssl.keystore.location",
            // An access key's id is not its secret (Spark's rule agrees).
            "faisca.store.s3.bucket.access_key_id",
        ] {
            assert!(!r.is_secret(key), "{key}");
        }
        assert_eq!(r.value("kafka.sasl.password", "hunter2"), REDACTED);
        assert_eq!(r.value("kafka.sasl.username", "alice"), "alice");
        assert_eq!(
            r.pairs([("a.password", "x"), ("b", "y")]),
            format!("a.password={REDACTED}, b=y")
        );
    }

    #[test]
    fn statement_text_keeps_everything_but_secret_values() {
        let r = Redaction::default();
        let cases = [
            (
                "CREATE EXTERNAL TABLE t STORED AS KAFKA LOCATION 'orders' OPTIONS ('kafka.sasl.password' 'hunter2', 'kafka.sasl.username' 'alice')",
                "CREATE EXTERNAL TABLE t STORED AS KAFKA LOCATION 'orders' OPTIONS ('kafka.sasl.password' '*********(redacted)', 'kafka.sasl.username' 'alice')",
            ),
            (
                "SELECT * FROM read_kafka('orders', MAP('kafka.ssl.key.password', 'hunter2', 'subscribe', 'x'))",
                "SELECT * FROM read_kafka('orders', MAP('kafka.ssl.key.password', '*********(redacted)', 'subscribe', 'x'))",
            ),
            (
                "SET faisca.store.s3.b.secret_access_key = 'hunter2'",
                "SET faisca.store.s3.b.secret_access_key = '*********(redacted)'",
            ),
            (
                "SET faisca.store.s3.b.secret_access_key TO hunter2",
                "SET faisca.store.s3.b.secret_access_key TO '*********(redacted)'",
            ),
            (
                "OPTIONS (\"kafka.sasl.jaas.config\" = 'org.Login required password=\"hunter2\";')",
                "OPTIONS (\"kafka.sasl.jaas.config\" = '*********(redacted)')",
            ),
            (
                "SELECT 'password' AS word, secret FROM t WHERE token IS NULL",
                "SELECT 'password' AS word, secret FROM t WHERE token IS NULL",
            ),
            ("SELECT 1", "SELECT 1"),
        ];
        for (text, expected) in cases {
            assert_eq!(r.sql(text), expected, "{text}");
        }
        // Not tokenizable: every literal goes.
        let broken = r.sql("OPTIONS ('kafka.sasl.password' 'hunter2 $$");
        assert!(!broken.contains("hunter2"), "{broken}");
    }

    #[test]
    fn secret_values_are_found_for_scrubbing_derived_text() {
        let r = Redaction::default();
        let sql = "SELECT from_avro(value, 's', MAP('basic.auth.user.info', 'bob:hunter2', 'mode', 'PERMISSIVE')) FROM t";
        let values = r.secret_values(sql);
        assert_eq!(values, ["bob:hunter2"]);
        let plan = "Projection: from_avro(t.value, Utf8(\"s\"), map(make_array(Utf8(\"basic.auth.user.info\"), Utf8(\"mode\")), make_array(Utf8(\"bob:hunter2\"), Utf8(\"PERMISSIVE\"))))";
        let scrubbed = scrub(plan, &values);
        assert!(!scrubbed.contains("hunter2"), "{scrubbed}");
        assert!(scrubbed.contains("PERMISSIVE"), "{scrubbed}");
    }

    #[test]
    fn a_custom_rule_and_a_bad_one() {
        let r = Redaction::new("(?i)^my[.]key$").unwrap();
        assert!(r.is_secret("My.Key"));
        assert!(!r.is_secret("kafka.sasl.password"));
        let e = Redaction::new("(").unwrap_err().to_string();
        assert!(e.contains("faisca.redaction.regex"), "{e}");
    }
}
