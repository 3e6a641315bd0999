//! Spark's DDL schema strings (`a INT, b STRING, c ARRAY<STRUCT<x: DOUBLE>>`) as Arrow fields.
//!
//! Types: `boolean`, `tinyint`/`byte`, `smallint`/`short`, `int`/`integer`, `bigint`/`long`,
//! `float`/`real`, `double`, `decimal(p, s)` (`decimal` = `decimal(10, 0)`), `string`,
//! `varchar(n)`, `char(n)`, `binary`, `date`, `timestamp` (µs, UTC), `timestamp_ntz`,
//! `array<T>`, `map<K, V>`, `struct<name: T, …>`. Names may be quoted with backticks; a field may
//! end with `NOT NULL` or `COMMENT '…'`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use faisca_common::{Error, Result};

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, expected: &str) -> Error {
        Error::user(format!(
            "schema '{}': expected {expected} at position {}{}; e.g. 'a INT, b STRING, c ARRAY<STRUCT<x: DOUBLE>>'",
            self.text,
            self.pos + 1,
            match self.rest().chars().next() {
                Some(c) => format!(" (found '{c}')"),
                None => " (found the end)".to_string(),
            }
        ))
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("'{c}'")))
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.rest().is_empty()
    }

    /// A name: letters, digits, `_`, or anything between backticks.
    fn name(&mut self) -> Result<String> {
        self.skip_space();
        if let Some(quoted) = self.rest().strip_prefix('`') {
            let end = quoted
                .find('`')
                .ok_or_else(|| self.error("a closing '`'"))?;
            let name = quoted[..end].to_string();
            self.pos += end + 2;
            return Ok(name);
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.error("a name"));
        }
        let name = self.rest()[..len].to_string();
        self.pos += len;
        Ok(name)
    }

    fn number(&mut self) -> Result<u32> {
        self.skip_space();
        let len = self
            .rest()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(self.rest().len());
        let n = self.rest()[..len]
            .parse()
            .map_err(|_| self.error("a number"))?;
        self.pos += len;
        Ok(n)
    }

    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        if rest.len() >= word.len()
            && rest[..word.len()].eq_ignore_ascii_case(word)
            && !rest[word.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn data_type(&mut self) -> Result<DataType> {
        let start = self.pos;
        let name = self.name()?.to_ascii_lowercase();
        Ok(match name.as_str() {
            "boolean" | "bool" => DataType::Boolean,
            "tinyint" | "byte" => DataType::Int8,
            "smallint" | "short" => DataType::Int16,
            "int" | "integer" => DataType::Int32,
            "bigint" | "long" => DataType::Int64,
            "float" | "real" => DataType::Float32,
            "double" => DataType::Float64,
            "string" => DataType::Utf8,
            "varchar" | "char" => {
                self.expect('(')?;
                self.number()?;
                self.expect(')')?;
                DataType::Utf8
            }
            "binary" => DataType::Binary,
            "date" => DataType::Date32,
            "timestamp" | "timestamp_ltz" => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            "timestamp_ntz" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "decimal" | "dec" | "numeric" => {
                let (mut p, mut s) = (10, 0);
                if self.eat('(') {
                    p = self.number()?;
                    if self.eat(',') {
                        s = self.number()?;
                    }
                    self.expect(')')?;
                }
                if p == 0 || p > 38 || s > p {
                    self.pos = start;
                    return Err(self.error("decimal(p, s) with 1 ≤ p ≤ 38 and s ≤ p"));
                }
                DataType::Decimal128(p as u8, s as i8)
            }
            "array" => {
                self.expect('<')?;
                let item = self.data_type()?;
                self.expect('>')?;
                DataType::List(Arc::new(Field::new("element", item, true)))
            }
            "map" => {
                self.expect('<')?;
                let key = self.data_type()?;
                self.expect(',')?;
                let value = self.data_type()?;
                self.expect('>')?;
                let entries = Field::new(
                    "entries",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", key, false),
                        Field::new("value", value, true),
                    ])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            }
            "struct" => {
                self.expect('<')?;
                let fields = if self.eat('>') {
                    Vec::new()
                } else {
                    let fields = self.fields(true)?;
                    self.expect('>')?;
                    fields
                };
                DataType::Struct(Fields::from(fields))
            }
            _ => {
                self.pos = start;
                return Err(self.error(
                    "a type (boolean, int, bigint, double, decimal(p,s), string, binary, date, timestamp, array<…>, map<…,…>, struct<…>)",
                ));
            }
        })
    }

    /// `name [:] type [NOT NULL] [COMMENT '…'], …`; inside `struct<…>` when `nested`.
    fn fields(&mut self, nested: bool) -> Result<Vec<Field>> {
        let mut fields = Vec::new();
        loop {
            let name = self.name()?;
            self.eat(':');
            let data_type = self.data_type()?;
            let nullable = !(self.keyword("not") && {
                if !self.keyword("null") {
                    return Err(self.error("NULL after NOT"));
                }
                true
            });
            if self.keyword("comment") {
                self.skip_space();
                let rest = self.rest();
                let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
                let Some(q) = quote else {
                    return Err(self.error("a quoted comment"));
                };
                let end = rest[1..]
                    .find(q)
                    .ok_or_else(|| self.error("a closing quote"))?;
                self.pos += end + 2;
            }
            if fields.iter().any(|f: &Field| f.name() == &name) {
                return Err(Error::user(format!(
                    "schema '{}': the field '{name}' appears twice",
                    self.text
                )));
            }
            fields.push(Field::new(name, data_type, nullable));
            if !self.eat(',') {
                break;
            }
            if !nested && self.at_end() {
                break;
            }
        }
        Ok(fields)
    }
}

/// The fields a DDL schema string describes (`a INT, b STRING`, or `STRUCT<a: INT, …>`).
pub fn parse_schema(text: &str) -> Result<Fields> {
    let mut p = Parser { text, pos: 0 };
    if p.at_end() {
        return Err(p.error("at least one field"));
    }
    let save = p.pos;
    if p.keyword("struct") && p.eat('<') {
        p.pos = save;
        let DataType::Struct(fields) = p.data_type()? else {
            return Err(p.error("struct<…>"));
        };
        if !p.at_end() {
            return Err(p.error("the end"));
        }
        return Ok(fields);
    }
    p.pos = save;
    let fields = p.fields(false)?;
    if !p.at_end() {
        return Err(p.error("',' or the end"));
    }
    Ok(Fields::from(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_ddl() {
        let f = parse_schema(
            "id BIGINT NOT NULL, `user name` STRING, price DECIMAL(10, 2), tags ARRAY<STRING>, at TIMESTAMP COMMENT 'when', attrs MAP<STRING, INT>, pos STRUCT<x: DOUBLE, y: DOUBLE>",
        )
        .unwrap();
        assert_eq!(f.len(), 7);
        assert_eq!(f[0].data_type(), &DataType::Int64);
        assert!(!f[0].is_nullable());
        assert_eq!(f[1].name(), "user name");
        assert_eq!(f[2].data_type(), &DataType::Decimal128(10, 2));
        assert!(matches!(f[3].data_type(), DataType::List(_)));
        assert!(matches!(f[5].data_type(), DataType::Map(_, false)));
        let DataType::Struct(pos) = f[6].data_type() else {
            panic!()
        };
        assert_eq!(pos.len(), 2);
        assert_eq!(parse_schema("struct<a: int, b: string>").unwrap().len(), 2);
        assert_eq!(parse_schema("a int,").unwrap().len(), 1);
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = parse_schema("a INTEGR").unwrap_err().to_string();
        assert!(
            e.contains("expected a type") && e.contains("position 3"),
            "{e}"
        );
        let e = parse_schema("a ARRAY<INT").unwrap_err().to_string();
        assert!(e.contains("expected '>'"), "{e}");
        let e = parse_schema("").unwrap_err().to_string();
        assert!(e.contains("at least one field"), "{e}");
        let e = parse_schema("a INT, a STRING").unwrap_err().to_string();
        assert!(e.contains("'a' appears twice"), "{e}");
        let e = parse_schema("a DECIMAL(40, 2)").unwrap_err().to_string();
        assert!(e.contains("1 ≤ p ≤ 38"), "{e}");
    }
}
