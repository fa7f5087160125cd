//! JSON Schema walking shared by the contract tests (`tests/protocol_contract.rs` for
//! docs/asyncapi.yaml, `tests/web_openapi.rs` for docs/openapi.yaml): a value serialized by the
//! code is compared with its documented schema — the same property names at every object level,
//! JSON types within `type`, array items against `items`, any alternative of `oneOf`/`anyOf`.
//! `$ref`s are local to the document given (`#/…`).

use std::collections::BTreeSet;

use serde_json::Value;

pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => match r.strip_prefix('#').and_then(|p| doc.pointer(p)) {
            Some(target) => resolve(doc, target),
            None => panic!("dangling $ref {r}"),
        },
        None => schema,
    }
}

pub fn type_ok(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        other => panic!("unknown schema type {other}"),
    }
}

/// Compares a serialized value with its schema: same property names at every object level,
/// every array item against `items`, JSON types within `type`, `oneOf` (and `anyOf`) = any alternative.
pub fn check(doc: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        let fits = alternatives.iter().any(|alt| {
            let mut e = Vec::new();
            check(doc, alt, value, path, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{path}: {value} fits no oneOf alternative"));
        }
        return;
    }
    if let Some(ty) = schema.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("{path}: odd type {other}"),
        };
        if !types.iter().any(|t| type_ok(value, t)) {
            errors.push(format!("{path}: {value} is not of type {types:?}"));
        }
    }
    match value {
        Value::Object(map) => {
            let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
                errors.push(format!(
                    "{path}: an object, but the document lists no properties"
                ));
                return;
            };
            let in_doc: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
            let in_code: BTreeSet<&str> = map.keys().map(String::as_str).collect();
            let only_code: Vec<_> = in_code.difference(&in_doc).collect();
            let only_doc: Vec<_> = in_doc.difference(&in_code).collect();
            if !only_code.is_empty() || !only_doc.is_empty() {
                errors.push(format!(
                    "{path}: fields only in code {only_code:?}, only in docs/asyncapi.yaml {only_doc:?}"
                ));
            }
            for (key, v) in map {
                if let Some(s) = properties.get(key) {
                    check(doc, s, v, &format!("{path}.{key}"), errors);
                }
            }
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => {
                for (i, item) in items.iter().enumerate() {
                    check(doc, item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{path}: an array, but the document has no items")),
        },
        _ => {}
    }
}
