//! JSON Schema → TypeScript, for the `.d.ts` files Code Mode shows the model. Written here
//! because no Rust crate emits TypeScript; docs/code-mode.md lists the mapping. Hostile schemas are
//! bounded: depth, `$ref` cycles, enum and property counts, and a total node budget all fall
//! back to `unknown` (or the members' base type) instead of growing without end.

use serde_json::{Map, Value};

/// Deeper than this, a type is `unknown`.
const MAX_DEPTH: usize = 8;
/// An enum with more members is written as its members' base type.
const MAX_ENUM: usize = 32;
/// An object with more properties shows the first ones and an index signature.
const MAX_PROPERTIES: usize = 100;
/// Schema nodes visited for one type, at most.
const MAX_NODES: usize = 4_000;

/// Writes TypeScript types for the schemas of one document (whose `$ref`s resolve in `root`).
pub struct Types<'s> {
    root: &'s Value,
    nodes: usize,
    refs: Vec<String>,
}

impl<'s> Types<'s> {
    pub fn new(root: &'s Value) -> Types<'s> {
        Types { root, nodes: 0, refs: Vec::new() }
    }

    /// The type of `schema`, as written at `indent` levels (two spaces each).
    pub fn of(&mut self, schema: &Value, indent: usize) -> String {
        self.nodes = 0;
        self.ty(schema, 0, indent)
    }

    fn ty(&mut self, schema: &Value, depth: usize, indent: usize) -> String {
        self.nodes += 1;
        if depth > MAX_DEPTH || self.nodes > MAX_NODES {
            return "unknown".into();
        }
        let schema = match schema {
            Value::Bool(true) => return "unknown".into(),
            Value::Bool(false) => return "never".into(),
            Value::Object(o) => o,
            _ => return "unknown".into(),
        };
        let base = self.base(schema, depth, indent);
        let nullable = schema.get("nullable").and_then(Value::as_bool) == Some(true);
        if nullable && base != "null" && !base.ends_with("| null") { format!("{base} | null") } else { base }
    }

    fn base(&mut self, schema: &Map<String, Value>, depth: usize, indent: usize) -> String {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.reference(reference, depth, indent);
        }
        if let Some(value) = schema.get("const") {
            return literal(value);
        }
        if let Some(Value::Array(members)) = schema.get("enum") {
            return enumeration(members);
        }
        for (keyword, joiner) in [("anyOf", " | "), ("oneOf", " | "), ("allOf", " & ")] {
            if let Some(Value::Array(parts)) = schema.get(keyword) {
                let types: Vec<String> = parts.iter().map(|p| self.ty(p, depth + 1, indent)).collect();
                let combined = join(types, joiner);
                // Sibling keywords (`type`, `properties`) still hold: `{path?, url?} & (A | B)`.
                let mut rest = schema.clone();
                rest.remove(keyword);
                let base = self.plain(&rest, depth, indent);
                return match base.as_str() {
                    "unknown" => combined,
                    _ => join(vec![base, combined], " & "),
                };
            }
        }
        self.plain(schema, depth, indent)
    }

    /// A schema's type from `type`, `properties` or `items` alone.
    fn plain(&mut self, schema: &Map<String, Value>, depth: usize, indent: usize) -> String {
        match schema.get("type") {
            Some(Value::String(t)) => self.typed(t, schema, depth, indent),
            Some(Value::Array(types)) => {
                let types: Vec<String> =
                    types.iter().filter_map(Value::as_str).map(|t| self.typed(t, schema, depth, indent)).collect();
                join(types, " | ")
            }
            _ if schema.contains_key("properties") => self.object(schema, depth, indent),
            _ if schema.contains_key("items") => self.typed("array", schema, depth, indent),
            _ => "unknown".into(),
        }
    }

    fn typed(&mut self, t: &str, schema: &Map<String, Value>, depth: usize, indent: usize) -> String {
        match t {
            "string" => "string".into(),
            "number" | "integer" => "number".into(),
            "boolean" => "boolean".into(),
            "null" => "null".into(),
            "array" => self.array(schema, depth, indent),
            "object" => self.object(schema, depth, indent),
            _ => "unknown".into(),
        }
    }

    fn reference(&mut self, reference: &str, depth: usize, indent: usize) -> String {
        let Some(pointer) = reference.strip_prefix('#') else { return "unknown".into() };
        if self.refs.iter().any(|r| r == reference) {
            return "unknown".into();
        }
        let pointer: String = pointer.to_owned();
        let unescaped: Vec<String> =
            pointer.split('/').skip(1).map(|p| p.replace("~1", "/").replace("~0", "~")).collect();
        let mut target = self.root;
        for part in &unescaped {
            target = match target {
                Value::Object(o) => match o.get(part) {
                    Some(t) => t,
                    None => return "unknown".into(),
                },
                Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get(i)) {
                    Some(t) => t,
                    None => return "unknown".into(),
                },
                _ => return "unknown".into(),
            };
        }
        self.refs.push(reference.to_owned());
        let resolved = self.ty(target, depth + 1, indent);
        self.refs.pop();
        resolved
    }

    fn array(&mut self, schema: &Map<String, Value>, depth: usize, indent: usize) -> String {
        let tuple = schema.get("prefixItems").or_else(|| schema.get("items").filter(|i| i.is_array()));
        if let Some(Value::Array(items)) = tuple {
            let types: Vec<String> = items.iter().map(|i| self.ty(i, depth + 1, indent)).collect();
            return format!("[{}]", types.join(", "));
        }
        match schema.get("items") {
            Some(items) => {
                let item = self.ty(items, depth + 1, indent);
                if top_level_operator(&item) { format!("({item})[]") } else { format!("{item}[]") }
            }
            None => "unknown[]".into(),
        }
    }

    fn object(&mut self, schema: &Map<String, Value>, depth: usize, indent: usize) -> String {
        let empty = Map::new();
        let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let extra = match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            None | Some(Value::Bool(true)) if properties.is_empty() => Some("unknown".to_owned()),
            None | Some(Value::Bool(true)) => None,
            Some(other) => Some(self.ty(other, depth + 1, indent + 1)),
        };
        if properties.is_empty() && extra.as_deref() == Some("unknown") {
            return "Record<string, unknown>".into();
        }
        let pad = "  ".repeat(indent + 1);
        let mut out = String::from("{\n");
        for (name, property) in properties.iter().take(MAX_PROPERTIES) {
            if let Some(doc) = jsdoc(property, &pad) {
                out.push_str(&doc);
            }
            let optional = if required.contains(&name.as_str()) { "" } else { "?" };
            let ty = self.ty(property, depth + 1, indent + 1);
            out.push_str(&format!("{pad}{}{optional}: {ty};\n", property_name(name)));
        }
        let extra = if properties.len() > MAX_PROPERTIES { Some("unknown".to_owned()) } else { extra };
        if let Some(extra) = extra {
            out.push_str(&format!("{pad}[key: string]: {extra};\n"));
        }
        out.push_str(&"  ".repeat(indent));
        out.push('}');
        out
    }
}

/// Whether a type has a `|` or `&` outside brackets (and so needs parentheses before `[]`).
fn top_level_operator(ty: &str) -> bool {
    let mut depth = 0i32;
    let mut in_string = false;
    for c in ty.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '{' | '(' | '[' | '<' => depth += 1,
            '}' | ')' | ']' | '>' => depth -= 1,
            '|' | '&' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

fn join(mut types: Vec<String>, joiner: &str) -> String {
    let mut seen = Vec::new();
    types.retain(|t| {
        let new = !seen.contains(t);
        seen.push(t.clone());
        new
    });
    match types.len() {
        0 => "never".into(),
        1 => types.remove(0),
        _ if joiner == " & " => types.iter().map(|t| format!("({t})")).collect::<Vec<_>>().join(joiner),
        _ => types.join(joiner),
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => value.to_string(),
        _ => "unknown".into(),
    }
}

fn enumeration(members: &[Value]) -> String {
    if members.len() <= MAX_ENUM {
        return join(members.iter().map(literal).collect(), " | ");
    }
    let bases: Vec<String> = members
        .iter()
        .map(|m| match m {
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "boolean",
            Value::Null => "null",
            _ => "unknown",
        })
        .map(str::to_owned)
        .collect();
    join(bases, " | ")
}

/// A property name as TypeScript accepts it: quoted unless an identifier.
pub fn property_name(name: &str) -> String {
    if is_identifier(name) { name.to_owned() } else { Value::String(name.to_owned()).to_string() }
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `description`, `default`, `format` and bounds as a JSDoc comment at `pad`.
pub fn jsdoc(schema: &Value, pad: &str) -> Option<String> {
    let schema = schema.as_object()?;
    let mut lines: Vec<String> = Vec::new();
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        lines.extend(description.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
    }
    for tag in ["default", "format", "minimum", "maximum", "minLength", "maxLength", "pattern", "examples"] {
        if let Some(value) = schema.get(tag) {
            let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            lines.push(format!("@{tag} {text}"));
        }
    }
    if lines.is_empty() {
        return None;
    }
    let safe: Vec<String> = lines.into_iter().map(|l| l.replace("*/", "* /")).collect();
    Some(match safe.as_slice() {
        [one] if one.len() < 80 => format!("{pad}/** {one} */\n"),
        _ => format!("{pad}/**\n{}{pad} */\n", safe.iter().map(|l| format!("{pad} * {l}\n")).collect::<String>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(schema: Value) -> String {
        Types::new(&schema).of(&schema, 0)
    }

    #[test]
    fn scalars_literals_and_combinators() {
        assert_eq!(ts(json!({"type": "string"})), "string");
        assert_eq!(ts(json!({"type": "integer"})), "number");
        assert_eq!(ts(json!({"type": ["string", "null"]})), "string | null");
        assert_eq!(ts(json!({"type": "string", "nullable": true})), "string | null");
        assert_eq!(ts(json!({"enum": ["a", "b", 1, null]})), r#""a" | "b" | 1 | null"#);
        assert_eq!(ts(json!({"const": "x"})), r#""x""#);
        assert_eq!(
            ts(json!({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "string"}]})),
            "string | number"
        );
        assert_eq!(
            ts(
                json!({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}, {"type": "object", "properties": {"b": {"type": "number"}}}]})
            ),
            "({\n  a: string;\n}) & ({\n  b?: number;\n})"
        );
        // A combinator beside properties narrows them; it does not replace them.
        let either = json!({"type": "object", "properties": {"path": {"type": "string"}, "url": {"type": "string"}},
            "anyOf": [{"required": ["path"]}, {"required": ["url"]}]});
        assert_eq!(ts(either), "({\n  path?: string;\n  url?: string;\n}) & (unknown)");
        assert_eq!(ts(json!(true)), "unknown");
        assert_eq!(ts(json!(false)), "never");
        assert_eq!(ts(json!({})), "unknown");
    }

    #[test]
    fn arrays_and_tuples() {
        assert_eq!(ts(json!({"type": "array", "items": {"type": "string"}})), "string[]");
        assert_eq!(ts(json!({"type": "array", "items": {"type": ["string", "number"]}})), "(string | number)[]");
        assert_eq!(
            ts(json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]})),
            "[string, number]"
        );
        assert_eq!(ts(json!({"type": "array", "items": [{"type": "boolean"}]})), "[boolean]");
        assert_eq!(ts(json!({"type": "array"})), "unknown[]");
        let nullable_objects =
            json!({"type": "array", "items": {"type": ["object", "null"], "properties": {"a": {"type": "string"}}}});
        assert_eq!(ts(nullable_objects), "({\n  a?: string;\n} | null)[]");
        assert_eq!(
            ts(json!({"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}})),
            "{\n  a?: string;\n}[]"
        );
    }

    #[test]
    fn objects_with_docs_optional_fields_and_odd_names() {
        let schema = json!({"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string", "description": "Where to read"},
            "max-lines": {"type": "integer", "default": 100, "minimum": 1},
            "mode": {"enum": ["text", "binary"]}
        }, "additionalProperties": false});
        assert_eq!(
            ts(schema),
            "{\n  /**\n   * @default 100\n   * @minimum 1\n   */\n  \"max-lines\"?: number;\n  mode?: \"text\" | \"binary\";\n  /** Where to read */\n  path: string;\n}"
        );
        assert_eq!(ts(json!({"type": "object"})), "Record<string, unknown>");
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "number"}})),
            "{\n  [key: string]: number;\n}"
        );
        // A description cannot close the comment early.
        assert!(jsdoc(&json!({"description": "evil */ code"}), "").unwrap().contains("evil * / code"));
    }

    #[test]
    fn refs_resolve_and_cycles_stop() {
        let schema = json!({"$defs": {"node": {"type": "object", "properties": {
            "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}},
            "a~b/c": {"type": "boolean"}},
            "type": "object", "properties": {"root": {"$ref": "#/$defs/node"}, "flag": {"$ref": "#/$defs/a~0b~1c"},
            "far": {"$ref": "https://example.com/schema"}, "gone": {"$ref": "#/$defs/missing"}}});
        let out = ts(schema);
        assert!(out.contains("flag?: boolean;"), "{out}");
        assert!(out.contains("far?: unknown;") && out.contains("gone?: unknown;"), "{out}");
        // node → children → node: the second visit is unknown.
        assert!(out.contains("children?: unknown[];"), "{out}");
    }

    #[test]
    fn hostile_schemas_stay_small() {
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let out = ts(deep);
        assert!(out.len() < 2_000 && out.contains("unknown"), "{}", out.len());
        let huge: Vec<Value> = (0..10_000).map(|i| json!(format!("v{i}"))).collect();
        assert_eq!(ts(json!({"enum": huge})), "string");
        // A wide and deep tree of refs to itself cannot explode.
        let bomb = json!({"$defs": {"t": {"anyOf": [{"$ref": "#/$defs/t"}, {"type": "array", "items": {"$ref": "#/$defs/t"}},
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/t"}, "b": {"$ref": "#/$defs/t"}}}]}}, "$ref": "#/$defs/t"});
        assert!(ts(bomb).len() < 50_000);
        let many: Map<String, Value> = (0..500).map(|i| (format!("p{i:03}"), json!({"type": "string"}))).collect();
        let out = ts(json!({"type": "object", "properties": many}));
        assert!(out.contains("p099?: string;") && !out.contains("p100") && out.contains("[key: string]: unknown;"));
    }
}
