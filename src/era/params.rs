//! `Mcp-Param-*` headers (revision 2026-07-28): a tool's `inputSchema` may mark parameters with
//! `x-mcp-header: Name`, and a `tools/call` over HTTP then mirrors their values into
//! `Mcp-Param-Name` headers, which servers check against the body.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

/// One annotated parameter: the header's name part and the property path to its value.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderParam {
    pub name: String,
    pub path: Vec<String>,
}

/// Why a tool definition's annotations are invalid (the tool is then left out).
#[derive(Debug, PartialEq)]
pub struct Invalid(pub String);

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The annotated parameters of an `inputSchema`, or why its annotations are invalid.
pub fn header_params(schema: &Value) -> Result<Vec<HeaderParam>, Invalid> {
    let mut found = vec![];
    walk(schema, Some(vec![]), &mut found)?;
    let mut seen: Vec<String> = vec![];
    for p in &found {
        let lower = p.name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(Invalid(format!("x-mcp-header `{}` is used twice", p.name)));
        }
        seen.push(lower);
    }
    Ok(found)
}

/// Visit `v`; `path` is the chain of `properties` keys that reaches it, or `None` when it is
/// not statically reachable that way.
fn walk(v: &Value, path: Option<Vec<String>>, found: &mut Vec<HeaderParam>) -> Result<(), Invalid> {
    match v {
        Value::Object(map) => {
            if let Some(h) = map.get("x-mcp-header") {
                let name = h.as_str().unwrap_or("");
                let Some(p) = path.as_ref().filter(|p| !p.is_empty()) else {
                    return Err(Invalid(format!(
                        "x-mcp-header `{name}` is not on a property reachable through `properties`"
                    )));
                };
                if name.is_empty() || !name.chars().all(is_tchar) {
                    return Err(Invalid(format!(
                        "x-mcp-header `{name}` is not a header name"
                    )));
                }
                let ty = map.get("type").and_then(Value::as_str).unwrap_or("");
                if !matches!(ty, "string" | "integer" | "boolean") {
                    return Err(Invalid(format!(
                        "x-mcp-header `{name}` is on a parameter of type `{ty}` (string, integer or boolean only)"
                    )));
                }
                found.push(HeaderParam {
                    name: name.to_owned(),
                    path: p.clone(),
                });
            }
            for (k, child) in map {
                if k == "properties"
                    && let (Some(p), Value::Object(props)) = (&path, child)
                {
                    for (prop, schema) in props {
                        let mut next = p.clone();
                        next.push(prop.clone());
                        walk(schema, Some(next), found)?;
                    }
                } else if k != "x-mcp-header" {
                    walk(child, None, found)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| walk(i, None, found)),
        _ => Ok(()),
    }
}

/// The value at `path` in a call's arguments, as header text (before encoding); `None` when
/// absent or null.
pub fn value_at(arguments: &Value, path: &[String]) -> Option<String> {
    let mut v = arguments;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a header's (decoded) text stands for `body` (integers compare as numbers).
pub fn same_value(header: &str, body: &str) -> bool {
    if header == body {
        return true;
    }
    match (header.parse::<f64>(), body.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// What is known of each tool's annotated parameters, learnt from `tools/list` results.
#[derive(Default)]
pub struct ToolHeaders {
    tools: Mutex<HashMap<String, Vec<HeaderParam>>>,
}

impl ToolHeaders {
    /// Learn from a `tools/list` result; returns the names of tools whose annotations are
    /// invalid (with why), which a client must leave out.
    pub fn learn(&self, result: &Value) -> Vec<(String, String)> {
        let mut invalid = vec![];
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return invalid;
        };
        let Ok(mut known) = self.tools.lock() else {
            return invalid;
        };
        for t in tools {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                continue;
            };
            match t.get("inputSchema").map(header_params) {
                Some(Ok(params)) if !params.is_empty() => {
                    known.insert(name.to_owned(), params);
                }
                Some(Err(Invalid(why))) => {
                    known.remove(name);
                    invalid.push((name.to_owned(), why));
                }
                _ => {
                    known.remove(name);
                }
            }
        }
        invalid
    }

    pub fn of(&self, tool: &str) -> Vec<HeaderParam> {
        self.tools
            .lock()
            .ok()
            .and_then(|t| t.get(tool).cloned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_found_on_property_chains() {
        let s = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "q":{"type":"string"}
        }});
        let mut p = header_params(&s).expect("valid");
        p.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(p[0].name, "N");
        assert_eq!(p[0].path, vec!["opts", "n"]);
        assert_eq!(p[1].path, vec!["region"]);
    }

    #[test]
    fn invalid_annotations_are_refused() {
        for s in [
            json!({"properties":{"a":{"type":"number","x-mcp-header":"A"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"A B"}}}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":""}}}),
            json!({"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}}),
            json!({"anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}),
            json!({"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}}),
        ] {
            assert!(header_params(&s).is_err(), "{s}");
        }
    }

    #[test]
    fn values_become_header_text() {
        let args = json!({"region":"us-west1","opts":{"n":42,"on":true},"none":null});
        assert_eq!(
            value_at(&args, &["region".into()]).as_deref(),
            Some("us-west1")
        );
        assert_eq!(
            value_at(&args, &["opts".into(), "n".into()]).as_deref(),
            Some("42")
        );
        assert_eq!(
            value_at(&args, &["opts".into(), "on".into()]).as_deref(),
            Some("true")
        );
        assert_eq!(value_at(&args, &["none".into()]), None);
        assert_eq!(value_at(&args, &["missing".into()]), None);
        assert!(same_value("42.0", "42"));
        assert!(!same_value("43", "42"));
    }
}
