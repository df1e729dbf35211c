//! Herald's generated OpenAPI document against Svix's v1 document
//! (`tests/reference/svix-openapi.json`): every Svix operation is in ours,
//! and for each one the request and response bodies agree, field by field,
//! on names and types (recursing into nested objects and list items).
//! Fields Svix requires in a response are present in ours, so the SDKs'
//! models parse what we send. The whole document is snapshotted.

use std::collections::BTreeSet;

use herald_api::openapi::{EXTENSION_FIELDS, EXTENSION_OPERATIONS, document};
use serde_json::Value;

fn svix() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/svix-openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// The schema itself: `$ref`s followed, a nullable `oneOf [null, T]` read
/// as `T`, and an `allOf` (serde's `flatten`) merged into one object, so
/// the two documents' ways of writing one shape compare equal.
fn resolve(doc: &Value, s: &Value) -> Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = s.get(key).and_then(Value::as_array) {
            let real: Vec<&Value> = variants.iter().filter(|v| v["type"] != "null").collect();
            if real.len() == 1 {
                return resolve(doc, real[0]);
            }
        }
    }
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::json!({"type": "object", "properties": {}, "required": []});
        for part in parts {
            let part = resolve(doc, part);
            for (k, v) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = v.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        return merged;
    }
    s.clone()
}

/// A schema's JSON type, with nullability (OpenAPI 3.0 `nullable`, 3.1
/// `[T, "null"]`) set aside: both documents may say null differently.
fn json_type(s: &Value) -> Option<String> {
    match s.get("type") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_owned),
        _ if s.get("enum").is_some() => Some("enum".to_owned()),
        _ => None,
    }
}

/// Compares `theirs` (Svix) with `ours` at `at`, recursing `depth` levels.
fn compare(
    svix: &Value,
    theirs: &Value,
    herald: &Value,
    ours: &Value,
    at: &str,
    response: bool,
    out: &mut Vec<String>,
) {
    let (t, o) = (resolve(svix, theirs), resolve(herald, ours));
    let (tt, ot) = (json_type(&t), json_type(&o));
    // Svix's integer enums (MessageStatus) are integers for us; string enums strings.
    let same = match (tt.as_deref(), ot.as_deref()) {
        (Some("enum"), Some(x)) => t["type"].as_str().is_none_or(|et| et == x),
        (a, b) => a == b || a.is_none() || b.is_none(),
    };
    if !same {
        out.push(format!("{at}: Svix says {tt:?}, Herald {ot:?}"));
        return;
    }
    if let (Some(ti), Some(oi)) = (t.get("items"), o.get("items")) {
        compare(svix, ti, herald, oi, &format!("{at}[]"), response, out);
    }
    let Some(props) = t.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: BTreeSet<&str> = t["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, schema) in props {
        match o["properties"].get(name) {
            Some(mine) => compare(svix, schema, herald, mine, &format!("{at}.{name}"), response, out),
            // A field Svix sends optionally we may leave out; one the SDK
            // requires in a response, or may send in a request, we may not.
            None if response && !required.contains(name.as_str()) => {}
            None => out.push(format!("{at}.{name}: missing in Herald's schema")),
        }
    }
}

fn json_body(op: &Value, response: bool) -> Option<&Value> {
    if response {
        let responses = op["responses"].as_object()?;
        responses
            .iter()
            .filter(|(code, _)| code.starts_with('2'))
            .find_map(|(_, r)| r.pointer("/content/application~1json/schema"))
    } else {
        op.pointer("/requestBody/content/application~1json/schema")
    }
}

#[test]
fn every_svix_operation_is_served_and_its_bodies_agree_field_by_field() {
    let (theirs, ours) = (svix(), document());
    let mut problems = Vec::new();
    let mut compared = 0;
    for (path, ops) in theirs["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = ops.get(*method) else { continue };
            let Some(mine) = ours["paths"].get(path).and_then(|p| p.get(*method)) else {
                problems.push(format!("{method} {path}: not in Herald's document"));
                continue;
            };
            for response in [true, false] {
                let Some(t) = json_body(op, response) else { continue };
                let what = if response { "response" } else { "request" };
                let Some(o) = json_body(mine, response) else {
                    problems.push(format!("{method} {path}: no JSON {what} body in Herald's document"));
                    continue;
                };
                compare(
                    &theirs,
                    t,
                    &ours,
                    o,
                    &format!("{method} {path} {what}"),
                    response,
                    &mut problems,
                );
                compared += 1;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(compared > 40, "only {compared} bodies compared");
}

#[test]
fn extensions_are_marked_and_name_real_fields_and_routes() {
    let (theirs, ours) = (svix(), document());
    for (schema, field) in EXTENSION_FIELDS {
        let prop = &ours["components"]["schemas"][schema]["properties"][field];
        assert_eq!(prop["x-herald-extension"], true, "{schema}.{field}");
        let svix_has = theirs["components"]["schemas"][schema]["properties"]
            .get(field)
            .is_some();
        assert!(!svix_has, "{schema}.{field} is Svix's own, not an extension");
    }
    for (path, method) in EXTENSION_OPERATIONS {
        assert_eq!(
            ours["paths"][path][method]["x-herald-extension"], true,
            "{method} {path}"
        );
        assert!(
            theirs["paths"].get(path).and_then(|p| p.get(method)).is_none(),
            "{method} {path} is Svix's"
        );
    }
    // Every property Herald adds to a schema Svix also has is marked.
    for (name, schema) in ours["components"]["schemas"].as_object().unwrap() {
        let Some(svix_props) = theirs["components"]["schemas"][name]["properties"].as_object() else {
            continue;
        };
        for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
            if !svix_props.contains_key(field) {
                assert_eq!(
                    prop["x-herald-extension"], true,
                    "{name}.{field} is Herald's but not marked"
                );
            }
        }
    }
}

#[test]
fn the_document_is_stable() {
    insta::assert_json_snapshot!("herald-openapi", document());
}
