//! GitHub's published REST API description (npm `@octokit/openapi`, pinned in
//! `scripts/install-prereqs.sh`; the file `generated/api.github.com.json`, OpenAPI 3.0.3)
//! as a validator for the in-test GitHub server ([`super::fake`]).
//!
//! * A request must match an operation: method, and path against the path templates
//!   (`{param}` is one segment; a literal segment wins over a template one, as
//!   `/issues/comments` over `/issues/{issue_number}`).
//! * Path and query parameters must be declared by the operation (path item level
//!   included) and their values valid for their schema (`issue_number` an integer,
//!   `state` one of its enum, ...); required ones must be present.
//! * A JSON body must validate against the operation's request-body schema, and a body
//!   is refused where the operation takes none. Stricter than GitHub in one way: an
//!   object that lists its `properties` and says nothing of `additionalProperties` takes
//!   no others (GitHub silently ignores unknown fields, so a misspelt field would
//!   otherwise pass here and do nothing there).
//! * Answers are checked against the response schema for their status, so the fake's
//!   own documents (built from the description's examples) stay faithful too.
//!
//! OpenAPI 3.0 schemas become JSON Schema draft 4 (the dialect 3.0 extends): `nullable`
//! adds `null` to `type`/`enum` (or wraps the schema in `anyOf` with `{type: null}`),
//! OpenAPI-only keywords are dropped, and `#/components/schemas/X` references become
//! `#/definitions/X`, carrying only the schemas the operation reaches.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

/// Where `scripts/install-prereqs.sh` puts the description.
fn spec_path() -> PathBuf {
    if let Some(p) = std::env::var_os("NUBES_TEST_GITHUB_OPENAPI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/tools/octokit-openapi/api.github.com.json");
    assert!(
        p.exists(),
        "GitHub's OpenAPI description is not installed: run scripts/install-prereqs.sh"
    );
    p
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One operation of the description.
#[derive(Debug, Clone)]
pub struct Op {
    pub method: String,
    pub template: String,
    pub operation_id: String,
    segments: Vec<Segment>,
}

/// A request matched to its operation, with the path parameters.
#[derive(Debug, Clone)]
pub struct Matched {
    pub op: Op,
    pub path_params: BTreeMap<String, String>,
}

pub struct Spec {
    doc: Value,
    ops: Vec<Op>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Spec {
    /// The description, parsed once per test process.
    pub fn get() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| {
            let path = spec_path();
            let text =
                std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let doc: Value = serde_json::from_slice(&text).expect("GitHub's description is JSON");
            assert!(
                doc["openapi"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("3.0")),
                "expected an OpenAPI 3.0 description"
            );
            let mut ops = Vec::new();
            for (template, item) in doc["paths"].as_object().expect("paths") {
                for (method, op) in item.as_object().expect("path item") {
                    if !["get", "put", "post", "delete", "patch", "head", "options"]
                        .contains(&method.as_str())
                    {
                        continue;
                    }
                    ops.push(Op {
                        method: method.to_ascii_uppercase(),
                        template: template.clone(),
                        operation_id: op["operationId"].as_str().unwrap_or_default().into(),
                        segments: template
                            .trim_start_matches('/')
                            .split('/')
                            .map(
                                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(name) => Segment::Param(name.into()),
                                    None => Segment::Literal(s.into()),
                                },
                            )
                            .collect(),
                    });
                }
            }
            Spec {
                doc,
                ops,
                validators: Mutex::new(HashMap::new()),
            }
        })
    }

    /// `components/examples/<name>/value`.
    pub fn example(&self, name: &str) -> Value {
        let v = &self.doc["components"]["examples"][name]["value"];
        assert!(!v.is_null(), "no example {name} in the description");
        v.clone()
    }

    /// The operation `method` + `path` calls, the most literal match winning.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, Matched)> = None;
        for op in self.ops.iter().filter(|o| o.method == method) {
            if op.segments.len() != parts.len() {
                continue;
            }
            let mut params = BTreeMap::new();
            let mut literal = 0;
            let fits = op.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                Segment::Literal(l) => {
                    literal += 1;
                    l == part
                }
                Segment::Param(name) => {
                    let decoded = percent_decode(part);
                    params.insert(name.clone(), decoded);
                    !part.is_empty()
                }
            });
            if fits && best.as_ref().is_none_or(|(n, _)| literal > *n) {
                best = Some((
                    literal,
                    Matched {
                        op: op.clone(),
                        path_params: params,
                    },
                ));
            }
        }
        best.map(|(_, m)| m)
    }

    fn operation(&self, op: &Op) -> &Value {
        &self.doc["paths"][&op.template][op.method.to_ascii_lowercase()]
    }

    /// Follow a `$ref` to another part of the document (parameters, request bodies,
    /// responses).
    fn deref<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r.strip_prefix('#').expect("local $ref");
                self.doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}"))
            }
            None => v,
        }
    }

    fn parameters(&self, op: &Op) -> Vec<&Value> {
        let item_level = self.doc["paths"][&op.template]["parameters"].as_array();
        let op_level = self.operation(op)["parameters"].as_array();
        item_level
            .into_iter()
            .chain(op_level)
            .flatten()
            .map(|p| self.deref(p))
            .collect()
    }

    /// Everything wrong with a request; empty when it is valid. `None` when no operation
    /// matches (an unknown endpoint).
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: &[u8],
    ) -> (Option<Matched>, Vec<String>) {
        let Some(matched) = self.find(method, path) else {
            return (
                None,
                vec![format!(
                    "{method} {path}: no operation in GitHub's description"
                )],
            );
        };
        let op = &matched.op;
        let at = format!("{method} {path} ({})", op.operation_id);
        let mut problems = Vec::new();
        let params = self.parameters(op);
        for (name, value) in &matched.path_params {
            match params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name.as_str())
            {
                Some(p) => self.check_value(op, p, value, &at, &mut problems),
                None => problems.push(format!("{at}: path parameter {name} is not declared")),
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (name, value) in query {
            *counts.entry(name).or_default() += 1;
            match params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == name.as_str())
            {
                Some(p) => self.check_value(op, p, value, &at, &mut problems),
                None => problems.push(format!("{at}: unknown query parameter `{name}`")),
            }
        }
        for (name, n) in counts {
            if n > 1 {
                problems.push(format!("{at}: query parameter `{name}` given {n} times"));
            }
        }
        for p in params
            .iter()
            .filter(|p| p["in"] == "query" && p["required"] == true)
        {
            let name = p["name"].as_str().unwrap_or_default();
            if !query.iter().any(|(k, _)| k == name) {
                problems.push(format!("{at}: required query parameter `{name}` missing"));
            }
        }
        let request_body = self.operation(op).get("requestBody").map(|b| self.deref(b));
        match request_body {
            None if !body.is_empty() => {
                problems.push(format!("{at}: a body was sent, the operation takes none"))
            }
            None => {}
            Some(rb) => {
                if body.is_empty() {
                    if rb["required"] == true {
                        problems.push(format!("{at}: the request body is required"));
                    }
                } else if let Some(schema) =
                    rb["content"].get("application/json").map(|c| &c["schema"])
                {
                    if !content_type.is_some_and(|c| c.starts_with("application/json")) {
                        problems.push(format!(
                            "{at}: content type {content_type:?}, the operation takes application/json"
                        ));
                    }
                    match serde_json::from_slice::<Value>(body) {
                        Err(e) => problems.push(format!("{at}: the body is not JSON: {e}")),
                        Ok(doc) => {
                            let key = format!("request {} {}", op.method, op.template);
                            let validator = self.validator(&key, schema, true);
                            for e in validator.iter_errors(&doc) {
                                problems.push(format!("{at}: body{}: {e}", e.instance_path()));
                            }
                        }
                    }
                } else {
                    problems.push(format!("{at}: the operation takes no JSON body"));
                }
            }
        }
        (Some(matched), problems)
    }

    /// Check a parameter's text against its schema (coerced as GitHub parses it).
    fn check_value(&self, op: &Op, p: &Value, text: &str, at: &str, problems: &mut Vec<String>) {
        let name = p["name"].as_str().unwrap_or_default();
        let schema = &p["schema"];
        let value = match schema["type"].as_str() {
            Some("integer") => text.parse::<i64>().map(Value::from).unwrap_or(json!(text)),
            Some("number") => text.parse::<f64>().map(Value::from).unwrap_or(json!(text)),
            Some("boolean") => match text {
                "true" => json!(true),
                "false" => json!(false),
                _ => json!(text),
            },
            Some("array") => json!(text.split(',').collect::<Vec<_>>()),
            _ => json!(text),
        };
        let key = format!("param {} {} {name}", op.method, op.template);
        let validator = self.validator(&key, schema, false);
        for e in validator.iter_errors(&value) {
            problems.push(format!("{at}: parameter `{name}` = {text:?}: {e}"));
        }
    }

    /// Everything wrong with the fake's own answer.
    pub fn check_response(&self, op: &Op, status: u16, body: &Value) -> Vec<String> {
        let responses = &self.operation(op)["responses"];
        let Some(response) = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .map(|r| self.deref(r))
        else {
            return vec![format!(
                "response {status} to {} {} is not in the description",
                op.method, op.template
            )];
        };
        let Some(schema) = response["content"]
            .get("application/json")
            .map(|c| &c["schema"])
        else {
            return if body.is_null() {
                vec![]
            } else {
                vec![format!(
                    "response {status} to {} {} has no JSON body in the description",
                    op.method, op.template
                )]
            };
        };
        let key = format!("response {status} {} {}", op.method, op.template);
        let validator = self.validator(&key, schema, false);
        validator
            .iter_errors(body)
            .map(|e| {
                format!(
                    "response {status} to {} {}: body{}: {e}",
                    op.method,
                    op.template,
                    e.instance_path()
                )
            })
            .collect()
    }

    fn validator(&self, key: &str, schema: &Value, request: bool) -> Arc<jsonschema::Validator> {
        if let Some(v) = self.validators.lock().expect("cache").get(key) {
            return v.clone();
        }
        let mut wanted = BTreeSet::new();
        let root = convert(schema, request, false, &mut wanted);
        let mut definitions = Map::new();
        let mut done = BTreeSet::new();
        while let Some(name) = wanted.iter().find(|n| !done.contains(*n)).cloned() {
            done.insert(name.clone());
            let source = &self.doc["components"]["schemas"][&name];
            assert!(!source.is_null(), "dangling schema reference {name}");
            let converted = convert(source, request, false, &mut wanted);
            definitions.insert(name, converted);
        }
        let doc = json!({ "allOf": [root], "definitions": definitions });
        let validator = Arc::new(
            jsonschema::draft4::options()
                .should_validate_formats(true)
                .build(&doc)
                .unwrap_or_else(|e| panic!("schema for {key} does not compile: {e}")),
        );
        self.validators
            .lock()
            .expect("cache")
            .insert(key.to_string(), validator.clone());
        validator
    }
}

/// OpenAPI 3.0 schema → JSON Schema draft 4 (see the module doc). `wanted` collects the
/// component schemas referenced.
fn convert(schema: &Value, request: bool, in_all_of: bool, wanted: &mut BTreeSet<String>) -> Value {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected schema $ref {r}"));
        wanted.insert(name.to_string());
        let escaped = name.replace('~', "~0").replace('/', "~1");
        return json!({ "$ref": format!("#/definitions/{escaped}") });
    }
    let mut out = Map::new();
    for (k, v) in obj {
        let converted = match k.as_str() {
            "nullable" | "example" | "examples" | "discriminator" | "xml" | "externalDocs"
            | "deprecated" | "readOnly" | "writeOnly" | "description" => continue,
            k if k.starts_with("x-") => continue,
            "properties" => Value::Object(
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(name, s)| (name.clone(), convert(s, request, false, wanted)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "items" | "not" => convert(v, request, false, wanted),
            "additionalProperties" if v.is_object() => convert(v, request, false, wanted),
            "allOf" => Value::Array(
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| convert(s, request, true, wanted))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            "oneOf" | "anyOf" => Value::Array(
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|s| convert(s, request, in_all_of, wanted))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => v.clone(),
        };
        out.insert(k.clone(), converted);
    }
    if request
        && !in_all_of
        && out.contains_key("properties")
        && !out.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), json!(false));
    }
    if obj.get("nullable") == Some(&json!(true)) {
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
        match out.get("type").cloned() {
            Some(Value::String(t)) => {
                out.insert("type".into(), json!([t, "null"]));
            }
            _ => return json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] }),
        }
    }
    Value::Object(out)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
