//! Checking a JSON answer against a schema of `docs/openapi.json`: the subset of JSON Schema
//! the file uses (`$ref`, `type` — one or a list —, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `minimum`, `minItems`, `maxItems`).

use serde_json::Value;

/// The API description.
pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    /// `docs/openapi.json` of this checkout.
    pub fn load() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let text = std::fs::read_to_string(&path).expect("docs/openapi.json");
        OpenApi {
            doc: serde_json::from_str(&text).expect("docs/openapi.json is JSON"),
        }
    }

    /// The schema of a successful `GET` of `path` (as the file spells it, e.g.
    /// `/applications/{appId}/jobs`).
    pub fn response_schema(&self, path: &str) -> &Value {
        let schema = &self.doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert!(!schema.is_null(), "docs/openapi.json has no GET {path}");
        schema
    }

    /// Every way `value` breaks `schema`, each with where (`$.jobs[0].status`).
    pub fn violations(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "$", &mut out);
        out
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .expect("local schema references only");
                let target = &self.doc["components"]["schemas"][name];
                assert!(!target.is_null(), "no schema {name}");
                target
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if let Some(kind) = schema.get("type") {
            let kinds: Vec<&str> = match kind {
                Value::String(k) => vec![k.as_str()],
                Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
                _ => panic!("bad type at {at}"),
            };
            if !kinds.iter().any(|k| type_matches(k, value)) {
                out.push(format!("{at}: expected {kinds:?}, got {value}"));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let (Some(min), Some(n)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) && n < min
        {
            out.push(format!("{at}: {n} is below {min}"));
        }
        if let Value::Object(map) = value {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(name) {
                    out.push(format!("{at}: missing '{name}'"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, item) in map {
                let path = format!("{at}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => self.check(property, item, &path, out),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => out.push(format!("{path}: not described")),
                        Some(extra @ Value::Object(_)) => self.check(extra, item, &path, out),
                        // Objects with listed properties are closed: an answer field the file
                        // does not describe is a drift between the two.
                        _ if properties.is_some() => out.push(format!("{path}: not described")),
                        _ => {}
                    },
                }
            }
        }
        if let Value::Array(items) = value {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && count < min
            {
                out.push(format!("{at}: {count} items, expected at least {min}"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && count > max
            {
                out.push(format!("{at}: {count} items, expected at most {max}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{at}[{i}]"), out);
                }
            }
        }
    }
}

fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => panic!("unknown type {kind}"),
    }
}

#[test]
fn the_checker_finds_what_breaks_a_schema() {
    let api = OpenApi::load();
    let schema = api.response_schema("/applications/{appId}/jobs/{jobId}");
    let good = serde_json::json!({
        "jobId": 1, "faiscaJobId": "x", "name": "", "description": "", "submissionTime": "t",
        "completionTime": null, "stageIds": [0], "status": "RUNNING", "numTasks": 1,
        "numActiveTasks": 1, "numCompletedTasks": 0, "numSkippedTasks": 0, "numFailedTasks": 0,
        "numKilledTasks": 0, "numCompletedIndices": 0, "numActiveStages": 1,
        "numCompletedStages": 0, "numSkippedStages": 0, "numFailedStages": 0,
        "killedTasksSummary": {}, "errorMessage": null,
    });
    assert_eq!(api.violations(schema, &good), Vec::<String>::new());
    let mut bad = good.clone();
    bad["status"] = "DONE".into();
    bad["numTasks"] = (-1).into();
    bad["surprise"] = 1.into();
    bad.as_object_mut().unwrap().remove("stageIds");
    let found = api.violations(schema, &bad);
    assert_eq!(found.len(), 4, "{found:#?}");
}
