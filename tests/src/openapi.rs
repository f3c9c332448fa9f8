//! Checks that the service and its OpenAPI document (`host/src/api/openapi.json`, served at
//! `GET /v1/openapi.json`) agree.
//!
//! - [`routes_in_source`] reads the routes the router declares in the host's source, and
//!   [`assert_same_routes`] compares them with [`routes_in_document`], both ways.
//! - [`Validator`] checks a real response (method, path, status, body) against the operation
//!   the document describes for it, so an end-to-end test catches schema drift:
//!
//! ```no_run
//! use junction_tests::openapi::Validator;
//! # let (status, body) = (200, serde_json::json!({}));
//! let api = Validator::service();
//! // … send GET /v1/connections/con_… and read the status and JSON body …
//! api.check("GET", "/v1/connections/con_01jd3x5m8k2q7r9t4v6w0y1z3g", status, &body);
//! ```
//!
//! - [`document_problems`] lints a document: every `$ref` resolves, every operation has an
//!   `operationId` and responses, path parameters are declared, objects say whether they
//!   allow other properties, and the examples of the schemas are valid.

use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A route: the HTTP method in upper case, and the path template (`/v1/folders/{id}`).
pub type Route = (String, String);

/// HTTP methods an OpenAPI path item can hold, in its (lower-case) spelling.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The OpenAPI document of the service, in the host's source.
pub fn document_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src/api/openapi.json")
}

/// The directory of the service's HTTP API source.
pub fn api_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/src/api")
}

/// Reads and parses a JSON document; panics with the path and the error.
pub fn load_document(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

// ------------------------------------------------------------------------------------------
// Routes in the source

/// The routes declared by the `.route("/path", get(a).post(b))` calls in the `.rs` files
/// under `api_src_dir` (recursively).
///
/// Items under `#[cfg(test)]`, and files named `tests.rs` or under a `tests` directory, are
/// skipped: test routers are not the service's. Panics, naming the file and line, on what
/// it cannot read for sure: a path that is not a string literal, a method router that is
/// not built from `get`/`post`/… calls (a variable, `any`, `on`), and `.nest`,
/// `.nest_service` and `.route_service`, whose paths or methods are not spelt out in the
/// `.route` call. Write routes with their full path so the code reads like the document.
pub fn routes_in_source(api_src_dir: &Path) -> BTreeSet<Route> {
    let mut files = Vec::new();
    collect_rust_files(api_src_dir, &mut files);
    assert!(
        !files.is_empty(),
        "no .rs file under {}: is that the API source directory?",
        api_src_dir.display()
    );
    files.sort();
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let found = routes_in_rust(&text).unwrap_or_else(|e| panic!("{}:{e}", file.display()));
        for route in found {
            if !routes.insert(route.clone()) {
                panic!(
                    "{}: route {} {} is declared twice",
                    file.display(),
                    route.0,
                    route.1
                );
            }
        }
    }
    routes
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                collect_rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

/// A token and its line.
type Lexed = (Tok, usize);

/// Splits Rust source into identifiers, string literals and punctuation, without comments,
/// character literals, lifetimes and numbers: enough to find method calls and their
/// arguments.
fn lex(src: &str) -> Result<Vec<Lexed>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let start = line;
            let mut depth = 1;
            i += 2;
            while depth > 0 {
                match (c.get(i), c.get(i + 1)) {
                    (None, _) => return Err(format!("{start}: unterminated block comment")),
                    (Some('/'), Some('*')) => {
                        depth += 1;
                        i += 2;
                    }
                    (Some('*'), Some('/')) => {
                        depth -= 1;
                        i += 2;
                    }
                    (Some(ch), _) => {
                        if *ch == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                }
            }
        } else if ch == '"' {
            let start = line;
            let (text, end) = quoted(&c, i + 1, &mut line)?;
            out.push((Tok::Str(text), start));
            i = end;
        } else if ch == '\'' {
            if next == Some('\\') {
                // An escaped character literal: '\n', '\'', '\u{1F600}'.
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3; // 'x'
            } else {
                i += 1; // a lifetime: its name is lexed as an identifier
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            match (word.as_str(), c.get(i)) {
                ("r" | "br" | "cr", Some('#' | '"')) => {
                    let hashes = c[i..].iter().take_while(|ch| **ch == '#').count();
                    if c.get(i + hashes) == Some(&'"') {
                        let (text, end) = raw(&c, i + hashes + 1, hashes, &mut line)?;
                        out.push((Tok::Str(text), line));
                        i = end;
                    } else {
                        i += hashes; // a raw identifier, r#type: lexed next
                    }
                }
                ("b" | "c", Some('"')) => {
                    let start_line = line;
                    let (text, end) = quoted(&c, i + 1, &mut line)?;
                    out.push((Tok::Str(text), start_line));
                    i = end;
                }
                ("b", Some('\'')) => {} // a byte literal: lexed next as a character literal
                _ => out.push((Tok::Ident(word), line)),
            }
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    Ok(out)
}

/// The text of a "…" literal whose content starts at `i`; returns it and the index after
/// the closing quote.
fn quoted(c: &[char], mut i: usize, line: &mut usize) -> Result<(String, usize), String> {
    let start = *line;
    let mut text = String::new();
    loop {
        match c.get(i) {
            None => return Err(format!("{start}: unterminated string literal")),
            Some('"') => return Ok((text, i + 1)),
            Some('\\') => {
                match c.get(i + 1) {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('\n') => {
                        // A line continuation: the newline and the next line's indentation go.
                        *line += 1;
                        i += 2;
                        while c.get(i).is_some_and(|ch| ch.is_whitespace()) {
                            if c[i] == '\n' {
                                *line += 1;
                            }
                            i += 1;
                        }
                        continue;
                    }
                    Some(other) => text.push(*other),
                    None => return Err(format!("{start}: unterminated string literal")),
                }
                i += 2;
            }
            Some(ch) => {
                if *ch == '\n' {
                    *line += 1;
                }
                text.push(*ch);
                i += 1;
            }
        }
    }
}

/// The text of a raw literal (`r#"…"#` with `hashes` hashes) whose content starts at `i`.
fn raw(c: &[char], i: usize, hashes: usize, line: &mut usize) -> Result<(String, usize), String> {
    let start = *line;
    let mut j = i;
    while j < c.len() {
        if c[j] == '"'
            && c[j + 1..]
                .iter()
                .take(hashes)
                .filter(|ch| **ch == '#')
                .count()
                == hashes
        {
            return Ok((c[i..j].iter().collect(), j + 1 + hashes));
        }
        if c[j] == '\n' {
            *line += 1;
        }
        j += 1;
    }
    Err(format!("{start}: unterminated raw string literal"))
}

/// Removes the items under `#[cfg(test)]`: the attribute, the attributes after it, and the
/// item up to its `;` or its closing brace.
fn strip_cfg_test(toks: Vec<Lexed>) -> Vec<Lexed> {
    let pattern = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let is_cfg_test = toks.len() - i >= pattern.len()
            && toks[i..i + pattern.len()]
                .iter()
                .zip(&pattern)
                .all(|((t, _), p)| t == p);
        if !is_cfg_test {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += pattern.len();
        let mut depth = 0usize;
        while i < toks.len() {
            let t = &toks[i].0;
            i += 1;
            match t {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// The routes of the `.route(…)` calls in one Rust source file; an error starts with the
/// line number.
fn routes_in_rust(src: &str) -> Result<Vec<Route>, String> {
    let toks = strip_cfg_test(lex(src)?);
    let mut routes = Vec::new();
    let mut i = 0;
    while i + 2 < toks.len() {
        let (Tok::Punct('.'), Tok::Ident(name), Tok::Punct('(')) =
            (&toks[i].0, &toks[i + 1].0, &toks[i + 2].0)
        else {
            i += 1;
            continue;
        };
        let line = toks[i + 1].1;
        match name.as_str() {
            "route" => {
                let (args, end) = call_arguments(&toks, i + 3)
                    .ok_or_else(|| format!("{line}: unbalanced `.route(` call"))?;
                routes.extend(route_call(&args, line)?);
                i = end;
            }
            "nest" | "nest_service" | "route_service" => {
                return Err(format!(
                    "{line}: `.{name}(…)` hides paths or methods from this check; declare each \
                     route with `.route(\"/full/path\", get(…).post(…))`, or teach \
                     junction_tests::openapi::routes_in_source to read it"
                ));
            }
            _ => i += 1,
        }
    }
    Ok(routes)
}

/// The top-level arguments of a call whose `(` was just before `start`, and the index after
/// its `)`.
fn call_arguments(toks: &[Lexed], start: usize) -> Option<(Vec<Vec<Tok>>, usize)> {
    let mut args = vec![Vec::new()];
    let mut depth = 0usize;
    for (offset, (t, _)) in toks[start..].iter().enumerate() {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')') if depth == 0 => {
                if args.last().is_some_and(Vec::is_empty) {
                    args.pop(); // a trailing comma
                }
                return Some((args, start + offset + 1));
            }
            Tok::Punct(')' | ']' | '}') => depth = depth.checked_sub(1)?,
            Tok::Punct(',') if depth == 0 => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        args.last_mut()?.push(t.clone());
    }
    None
}

fn route_call(args: &[Vec<Tok>], line: usize) -> Result<Vec<Route>, String> {
    let [path, router] = args else {
        return Err(format!(
            "{line}: `.route(…)` takes a path and a method router, found {} arguments",
            args.len()
        ));
    };
    let [Tok::Str(path)] = path.as_slice() else {
        return Err(format!(
            "{line}: the path of a `.route(…)` must be a string literal for this check to read it"
        ));
    };
    let mut methods = Vec::new();
    let mut depth = 0usize;
    for (k, t) in router.iter().enumerate() {
        match t {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
            Tok::Ident(name) if depth == 0 && router.get(k + 1) == Some(&Tok::Punct('(')) => {
                let method = name.strip_suffix("_service").unwrap_or(name);
                if METHODS.contains(&method) {
                    methods.push((method.to_uppercase(), path.clone()));
                }
            }
            _ => {}
        }
    }
    if methods.is_empty() {
        return Err(format!(
            "{line}: cannot tell the methods of route `{path}`: build its method router in the \
             `.route(…)` call from get(…), post(…), put(…), patch(…), delete(…)"
        ));
    }
    Ok(methods)
}

// ------------------------------------------------------------------------------------------
// Routes in the document

/// The (method, path) of every operation of an OpenAPI document.
pub fn routes_in_document(document: &Value) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    if let Some(paths) = document.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(*method).is_some() {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

/// Compares the routes of the code with those of the document; the error lists what each
/// side has that the other does not.
pub fn route_diff(in_code: &BTreeSet<Route>, in_document: &BTreeSet<Route>) -> Result<(), String> {
    let only_code: Vec<_> = in_code.difference(in_document).collect();
    let only_doc: Vec<_> = in_document.difference(in_code).collect();
    if only_code.is_empty() && only_doc.is_empty() {
        return Ok(());
    }
    let mut msg = String::from("the routes of the code and of the OpenAPI document differ\n");
    if !only_code.is_empty() {
        msg.push_str(
            "in the code, not in the document (document them in host/src/api/openapi.json):\n",
        );
        for (m, p) in &only_code {
            let _ = writeln!(msg, "  {m} {p}");
        }
    }
    if !only_doc.is_empty() {
        msg.push_str(
            "in the document, not in the code (route them, or remove them from the document):\n",
        );
        for (m, p) in &only_doc {
            let _ = writeln!(msg, "  {m} {p}");
        }
    }
    Err(msg)
}

/// Panics with [`route_diff`]'s message when the two sets differ.
pub fn assert_same_routes(in_code: &BTreeSet<Route>, in_document: &BTreeSet<Route>) {
    if let Err(e) = route_diff(in_code, in_document) {
        panic!("{e}");
    }
}

// ------------------------------------------------------------------------------------------
// Response validation

/// One operation of the document.
#[derive(Debug, Clone)]
struct Operation {
    /// Upper case.
    method: String,
    template: String,
    /// `None` for a `{parameter}` segment.
    segments: Vec<Option<String>>,
    /// JSON pointer to the operation object.
    pointer: String,
    operation_id: Option<String>,
}

/// Validates responses (and request bodies) against an OpenAPI 3.1 document, with JSON
/// Schema draft 2020-12. Compiled schemas are cached, so one validator can check every
/// response of a test run.
#[derive(Debug)]
pub struct Validator {
    document: Value,
    /// `components.schemas`, with references rewritten to point into `$defs`.
    defs: Value,
    operations: Vec<Operation>,
    compiled: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Validator {
    /// A validator of `document`; fails when it has no `paths`.
    pub fn new(document: Value) -> Result<Validator, String> {
        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .ok_or("the document has no `paths` object")?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            if !template.starts_with('/') {
                return Err(format!("path `{template}` does not start with `/`"));
            }
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                operations.push(Operation {
                    method: method.to_uppercase(),
                    template: template.clone(),
                    segments: template_segments(template),
                    pointer: format!("/paths/{}/{method}", escape_pointer(template)),
                    operation_id: op
                        .get("operationId")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                });
            }
        }
        let mut defs = document
            .pointer("/components/schemas")
            .cloned()
            .unwrap_or_else(|| json!({}));
        rewrite_refs(&mut defs)?;
        Ok(Validator {
            document,
            defs,
            operations,
            compiled: Mutex::new(HashMap::new()),
        })
    }

    /// A validator of the document at `path`; panics if it cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Validator {
        let path = path.as_ref();
        Validator::new(load_document(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A validator of the service's document, `host/src/api/openapi.json`.
    pub fn service() -> Validator {
        Validator::load(document_path())
    }

    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The (method, path template) of every operation.
    pub fn routes(&self) -> BTreeSet<Route> {
        routes_in_document(&self.document)
    }

    /// The `operationId` of the operation serving `method` `path` (a template or a
    /// concrete path), if it is documented and has one.
    pub fn operation_id(&self, method: &str, path: &str) -> Option<&str> {
        self.operation(method, path).ok()?.operation_id.as_deref()
    }

    /// Checks a response: `path` may be a template (`/v1/folders/{id}`) or a concrete path
    /// (`/v1/folders/fld_…?limit=5`, or a whole URL); the status must be documented for the
    /// operation (exactly, as `4XX`, or as `default`); the body must match the schema of its
    /// `application/json` content. `Value::Null` stands for an empty body (a 204), and a
    /// text body (`/metrics`) is passed as a `Value::String`.
    pub fn validate_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let op = self.operation(method, path)?;
        let name = describe(op);
        let responses = self
            .document
            .pointer(&format!("{}/responses", op.pointer))
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{name} has no responses"))?;
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        let Some((key, response)) = [exact.as_str(), range.as_str(), "default"]
            .iter()
            .find_map(|k| responses.get(*k).map(|r| (*k, r)))
        else {
            let documented: Vec<&str> = responses.keys().map(String::as_str).collect();
            return Err(format!(
                "{name} answered status {status}, which the document does not list for it \
                 (documented: {}); body: {}",
                documented.join(", "),
                excerpt(body)
            ));
        };
        let response_pointer = format!("{}/responses/{}", op.pointer, escape_pointer(key));
        let (response_pointer, response) = self.deref(&response_pointer, response)?;
        let content = response.get("content").and_then(Value::as_object);
        let context = format!("{name} status {status}");
        match content {
            // Text where the response also documents a non-JSON type (a page for a
            // browser beside the JSON): only its media type could be checked.
            Some(content)
                if body.is_string() && content.keys().any(|k| k != "application/json") =>
            {
                Ok(())
            }
            Some(content) if content.contains_key("application/json") => {
                let pointer = format!("{response_pointer}/content/application~1json/schema");
                match self.document.pointer(&pointer) {
                    Some(_) => self.validate_at(&pointer, body, &context),
                    None => Ok(()), // JSON without a schema: anything goes
                }
            }
            Some(content) if !content.is_empty() => match body {
                Value::String(_) => Ok(()),
                _ => Err(format!(
                    "{context}: the document gives this response a non-JSON body; pass its text as \
                     a JSON string (got {})",
                    excerpt(body)
                )),
            },
            _ if body.is_null() => Ok(()),
            _ => Err(format!(
                "{context}: the document gives this response no body, but it has one: {}",
                excerpt(body)
            )),
        }
    }

    /// [`Validator::validate_response`], panicking with its message.
    #[track_caller]
    pub fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        if let Err(e) = self.validate_response(method, path, status, body) {
            panic!("the response does not conform to the OpenAPI document: {e}");
        }
    }

    /// Checks a raw response: its content type must be one the document gives the response
    /// (a body-less response must have an empty body), and a JSON body must match its
    /// schema.
    pub fn validate_raw_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let media = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let value = if body.is_empty() {
            Value::Null
        } else if media == "application/json" {
            serde_json::from_slice(body).map_err(|e| {
                format!(
                    "{method} {path} status {status}: the body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)])
                )
            })?
        } else {
            Value::String(String::from_utf8_lossy(body).into_owned())
        };
        if !body.is_empty() {
            let op = self.operation(method, path)?;
            let documented = self.media_types(op, status)?;
            if !documented.iter().any(|d| d == &media) {
                return Err(format!(
                    "{} status {status}: content type `{}` is not documented (documented: {})",
                    describe(op),
                    content_type.unwrap_or("none"),
                    if documented.is_empty() {
                        "no body".to_owned()
                    } else {
                        documented.join(", ")
                    }
                ));
            }
            // A page for a browser (text/html beside the JSON of the same response): only
            // its media type can be checked.
            if media != "application/json" {
                return Ok(());
            }
        }
        self.validate_response(method, path, status, &value)
    }

    /// [`Validator::validate_raw_response`], panicking with its message.
    #[track_caller]
    pub fn check_raw(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) {
        if let Err(e) = self.validate_raw_response(method, path, status, content_type, body) {
            panic!("the response does not conform to the OpenAPI document: {e}");
        }
    }

    /// Checks a request body against the operation's `requestBody` schema, e.g. to make sure
    /// a test sends what the document says clients send. `Value::Null` stands for no body.
    pub fn validate_request(&self, method: &str, path: &str, body: &Value) -> Result<(), String> {
        let op = self.operation(method, path)?;
        let name = describe(op);
        let pointer = format!("{}/requestBody", op.pointer);
        let Some(request) = self.document.pointer(&pointer) else {
            return if body.is_null() {
                Ok(())
            } else {
                Err(format!("{name} takes no request body"))
            };
        };
        let (pointer, request) = self.deref(&pointer, request)?;
        if body.is_null() {
            let required = request.get("required").and_then(Value::as_bool) == Some(true);
            return if required {
                Err(format!("{name} requires a request body"))
            } else {
                Ok(())
            };
        }
        let schema = format!("{pointer}/content/application~1json/schema");
        if self.document.pointer(&schema).is_none() {
            return Err(format!("{name} takes no JSON request body"));
        }
        self.validate_at(&schema, body, &format!("{name} request body"))
    }

    /// [`Validator::validate_request`], panicking with its message.
    #[track_caller]
    pub fn check_request(&self, method: &str, path: &str, body: &Value) {
        if let Err(e) = self.validate_request(method, path, body) {
            panic!("the request does not conform to the OpenAPI document: {e}");
        }
    }

    /// Compiles every response and request body schema of the document, so a schema that
    /// jsonschema rejects (or a dangling reference) is reported before any response is.
    pub fn compile_all(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        for op in &self.operations {
            let Some(responses) = self
                .document
                .pointer(&format!("{}/responses", op.pointer))
                .and_then(Value::as_object)
            else {
                continue;
            };
            let mut pointers = Vec::new();
            for (key, response) in responses {
                let at = format!("{}/responses/{}", op.pointer, escape_pointer(key));
                match self.deref(&at, response) {
                    Ok((p, r)) if r.pointer("/content/application~1json/schema").is_some() => {
                        pointers.push(format!("{p}/content/application~1json/schema"));
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e),
                }
            }
            let body = format!("{}/requestBody", op.pointer);
            if let Some(request) = self.document.pointer(&body) {
                match self.deref(&body, request) {
                    Ok((p, r)) if r.pointer("/content/application~1json/schema").is_some() => {
                        pointers.push(format!("{p}/content/application~1json/schema"));
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(e),
                }
            }
            for p in pointers {
                if let Err(e) = self.compiled_at(&p) {
                    problems.push(format!("{}: {e}", describe(op)));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }

    fn operation(&self, method: &str, path: &str) -> Result<&Operation, String> {
        let path = strip_url(path);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, &Operation)> = None;
        let mut other_methods = BTreeSet::new();
        for op in &self.operations {
            let Some(score) = match_segments(&op.segments, &segments) else {
                continue;
            };
            if !op.method.eq_ignore_ascii_case(method) {
                other_methods.insert(op.method.as_str());
                continue;
            }
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, op));
            }
        }
        if let Some((_, op)) = best {
            return Ok(op);
        }
        if other_methods.is_empty() {
            let templates: BTreeSet<&str> = self
                .operations
                .iter()
                .map(|o| o.template.as_str())
                .collect();
            Err(format!(
                "no path of the document matches `{path}`; documented paths:\n  {}",
                templates.into_iter().collect::<Vec<_>>().join("\n  ")
            ))
        } else {
            Err(format!(
                "{} {path} is not documented; the path has {}",
                method.to_uppercase(),
                other_methods.into_iter().collect::<Vec<_>>().join(", ")
            ))
        }
    }

    /// The media types of the response `status` of `op` (empty for a body-less response).
    fn media_types(&self, op: &Operation, status: u16) -> Result<Vec<String>, String> {
        let responses = self
            .document
            .pointer(&format!("{}/responses", op.pointer))
            .and_then(Value::as_object);
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        let found = [exact.as_str(), range.as_str(), "default"]
            .iter()
            .find_map(|k| responses?.get(*k).map(|r| (*k, r)));
        let Some((key, response)) = found else {
            return Ok(Vec::new()); // validate_response reports the undocumented status
        };
        let at = format!("{}/responses/{}", op.pointer, escape_pointer(key));
        let (_, response) = self.deref(&at, response)?;
        Ok(response
            .get("content")
            .and_then(Value::as_object)
            .map(|c| c.keys().map(|k| k.to_ascii_lowercase()).collect())
            .unwrap_or_default())
    }

    /// Follows `$ref`s from the object at `pointer`; returns the pointer and the object
    /// finally reached.
    fn deref<'a>(
        &'a self,
        pointer: &str,
        mut value: &'a Value,
    ) -> Result<(String, &'a Value), String> {
        let mut pointer = pointer.to_owned();
        for _ in 0..16 {
            let Some(target) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((pointer, value));
            };
            let local = target.strip_prefix('#').ok_or_else(|| {
                format!("{pointer}: only local references are supported, not `{target}`")
            })?;
            value = self
                .document
                .pointer(local)
                .ok_or_else(|| format!("{pointer}: `{target}` does not resolve"))?;
            pointer = local.to_owned();
        }
        Err(format!("{pointer}: too many nested references"))
    }

    fn validate_at(&self, pointer: &str, body: &Value, context: &str) -> Result<(), String> {
        let validator = self
            .compiled_at(pointer)
            .map_err(|e| format!("{context}: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "at {}: {e} (schema {})",
                    if at.is_empty() { "the root" } else { &at },
                    e.schema_path()
                )
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        let shown = errors.len().min(10);
        Err(format!(
            "{context}: the body does not match the schema at #{pointer}:\n  {}{}\nbody: {}",
            errors[..shown].join("\n  "),
            if errors.len() > shown {
                format!("\n  … and {} more", errors.len() - shown)
            } else {
                String::new()
            },
            excerpt(body)
        ))
    }

    /// The compiled schema at `pointer` (cached): the schema, with the document's
    /// components under `$defs`.
    fn compiled_at(&self, pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
        if let Some(v) = self.compiled.lock().unwrap().get(pointer) {
            return Ok(v.clone());
        }
        let mut schema = self
            .document
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| format!("no schema at #{pointer}"))?;
        rewrite_refs(&mut schema)?;
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": self.defs,
            "allOf": [schema],
        });
        let compiled = jsonschema::draft202012::new(&root)
            .map_err(|e| format!("the schema at #{pointer} does not compile: {e}"))?;
        let compiled = Arc::new(compiled);
        self.compiled
            .lock()
            .unwrap()
            .insert(pointer.to_owned(), compiled.clone());
        Ok(compiled)
    }
}

fn describe(op: &Operation) -> String {
    match &op.operation_id {
        Some(id) => format!("{} {} ({id})", op.method, op.template),
        None => format!("{} {}", op.method, op.template),
    }
}

fn template_segments(template: &str) -> Vec<Option<String>> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                None
            } else {
                Some(s.to_owned())
            }
        })
        .collect()
}

/// How well a concrete path matches a template: `None` if not at all, else the number of
/// literal segments (a literal segment beats a parameter).
fn match_segments(template: &[Option<String>], path: &[&str]) -> Option<usize> {
    if template.len() != path.len() {
        return None;
    }
    let mut literal = 0;
    for (t, p) in template.iter().zip(path) {
        match t {
            Some(t) if t == p => literal += 1,
            Some(_) => return None,
            None if p.is_empty() => return None,
            None => {}
        }
    }
    Some(literal)
}

/// The path of `url` without scheme, authority, query and fragment.
fn strip_url(url: &str) -> &str {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => url,
    };
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Rewrites `#/components/schemas/X` references to `#/$defs/X`; other references are an
/// error (schemas may only refer to schemas).
fn rewrite_refs(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                match target.strip_prefix("#/components/schemas/") {
                    Some(rest) => *target = format!("#/$defs/{rest}"),
                    None => {
                        return Err(format!(
                            "a schema refers to `{target}`; schemas may only refer to \
                             #/components/schemas/…"
                        ));
                    }
                }
            }
            for (key, v) in map.iter_mut() {
                // Examples, defaults and constants are data, not schemas.
                if !matches!(
                    key.as_str(),
                    "examples" | "example" | "default" | "const" | "enum"
                ) {
                    rewrite_refs(v)?;
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                rewrite_refs(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn excerpt(body: &Value) -> String {
    let text = serde_json::to_string_pretty(body).unwrap_or_default();
    if text.len() <= 2000 {
        return text;
    }
    let mut end = 2000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

// ------------------------------------------------------------------------------------------
// Document lint

/// What is wrong with an OpenAPI 3.1 document, for its readers and for [`Validator`]: an
/// empty list when nothing is.
///
/// Checks: `openapi` is 3.1.x and `info` has a title and version; every `$ref` is local and
/// resolves; every operation has a unique `operationId`, a summary and responses whose keys
/// are statuses; every `{parameter}` of a path is declared `in: path, required: true`, and
/// every declared path parameter is in the path; every operation that needs a token
/// documents 401; every object schema with `properties` says whether other properties are
/// allowed (`additionalProperties`); every schema compiles; every example of a component
/// schema is valid against it.
pub fn document_problems(document: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let p = &mut problems;
    match document.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.1.") => {}
        other => p.push(format!("`openapi` must be 3.1.x, found {other:?}")),
    }
    for key in ["title", "version"] {
        if document
            .pointer(&format!("/info/{key}"))
            .and_then(Value::as_str)
            .is_none()
        {
            p.push(format!("`info.{key}` is missing"));
        }
    }
    check_refs(document, document, "", p);
    check_additional_properties(document, "", false, p);

    let default_security = document
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let mut ids = HashSet::new();
    let empty = Map::new();
    let paths = document
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if paths.is_empty() {
        p.push("the document has no paths".into());
    }
    for (template, item) in paths {
        let in_template: BTreeSet<String> = template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        let path_level = path_parameters(document, item.get("parameters"), p);
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let name = format!("{} {template}", method.to_uppercase());
            match op.get("operationId").and_then(Value::as_str) {
                Some(id) if !ids.insert(id.to_owned()) => {
                    p.push(format!("{name}: operationId `{id}` is used twice"));
                }
                Some(_) => {}
                None => p.push(format!("{name}: no operationId")),
            }
            if op.get("summary").and_then(Value::as_str).is_none() {
                p.push(format!("{name}: no summary"));
            }
            let responses = op.get("responses").and_then(Value::as_object);
            match responses {
                Some(r) if !r.is_empty() => {
                    for key in r.keys() {
                        let valid = key == "default"
                            || (key.len() == 3
                                && matches!(key.as_bytes()[0], b'1'..=b'5')
                                && (key[1..].bytes().all(|b| b.is_ascii_digit())
                                    || &key[1..] == "XX"));
                        if !valid {
                            p.push(format!("{name}: `{key}` is not a response status"));
                        }
                    }
                }
                _ => p.push(format!("{name}: no responses")),
            }
            let secured = match op.get("security").and_then(Value::as_array) {
                Some(s) => !s.is_empty(),
                None => default_security,
            };
            if secured && responses.is_some_and(|r| !r.contains_key("401")) {
                p.push(format!("{name}: needs a token but does not document 401"));
            }
            let mut declared = path_level.clone();
            declared.extend(path_parameters(document, op.get("parameters"), p));
            for missing in in_template.difference(&declared) {
                p.push(format!(
                    "{name}: path parameter `{missing}` is not declared (in: path, required: true)"
                ));
            }
            for extra in declared.difference(&in_template) {
                p.push(format!(
                    "{name}: declares path parameter `{extra}`, which is not in the path"
                ));
            }
        }
    }

    match Validator::new(document.clone()) {
        Ok(validator) => {
            if let Err(e) = validator.compile_all() {
                p.push(e);
            }
            check_examples(&validator, p);
        }
        Err(e) => p.push(e),
    }
    problems
}

/// The names of the path parameters in a `parameters` list (following references).
fn path_parameters(
    document: &Value,
    list: Option<&Value>,
    problems: &mut Vec<String>,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for param in list.and_then(Value::as_array).into_iter().flatten() {
        let param = match param.get("$ref").and_then(Value::as_str) {
            Some(target) => match target.strip_prefix('#').and_then(|t| document.pointer(t)) {
                Some(p) => p,
                None => continue, // check_refs reports it
            },
            None => param,
        };
        if param.get("in").and_then(Value::as_str) != Some("path") {
            continue;
        }
        let name = param.get("name").and_then(Value::as_str).unwrap_or("");
        if param.get("required").and_then(Value::as_bool) != Some(true) {
            problems.push(format!("path parameter `{name}` must be `required: true`"));
        }
        names.insert(name.to_owned());
    }
    names
}

fn check_refs(document: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref") {
                let resolves = target
                    .as_str()
                    .and_then(|t| t.strip_prefix('#'))
                    .is_some_and(|t| document.pointer(t).is_some());
                if !resolves {
                    problems.push(format!(
                        "#{at}: `$ref` {target} does not resolve in the document"
                    ));
                }
            }
            for (key, v) in map {
                if !matches!(
                    key.as_str(),
                    "examples" | "example" | "default" | "const" | "enum"
                ) {
                    check_refs(
                        document,
                        v,
                        &format!("{at}/{}", escape_pointer(key)),
                        problems,
                    );
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(document, v, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

/// Every schema typed `object` that lists `properties` must say whether others are allowed.
fn check_additional_properties(value: &Value, at: &str, data: bool, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let is_object = match map.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            if !data
                && is_object
                && map.contains_key("properties")
                && !map.contains_key("additionalProperties")
            {
                problems.push(format!(
                    "#{at}: an object schema with `properties` must set `additionalProperties` \
                     (false, so responses with unknown properties are caught)"
                ));
            }
            for (key, v) in map {
                let data = data
                    || matches!(
                        key.as_str(),
                        "examples" | "example" | "default" | "const" | "enum"
                    );
                check_additional_properties(
                    v,
                    &format!("{at}/{}", escape_pointer(key)),
                    data,
                    problems,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_additional_properties(v, &format!("{at}/{i}"), data, problems);
            }
        }
        _ => {}
    }
}

/// Every `examples` entry of a component schema must be valid against the schema.
fn check_examples(validator: &Validator, problems: &mut Vec<String>) {
    let Some(schemas) = validator
        .document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    for (name, schema) in schemas {
        let Some(examples) = schema.get("examples").and_then(Value::as_array) else {
            continue;
        };
        let pointer = format!("/components/schemas/{}", escape_pointer(name));
        for (i, example) in examples.iter().enumerate() {
            if let Err(e) =
                validator.validate_at(&pointer, example, &format!("example {i} of schema {name}"))
            {
                problems.push(e);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A small document: a page of things, a thing by id, and an error response by reference.
    fn tiny() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "tiny", "version": "1"},
            "paths": {
                "/things": {
                    "get": {
                        "operationId": "listThings",
                        "summary": "List",
                        "responses": {
                            "200": {"description": "ok", "content": {"application/json": {"schema": {
                                "type": "object", "additionalProperties": false, "required": ["items"],
                                "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}}
                            }}}},
                            "400": {"$ref": "#/components/responses/Error"}
                        }
                    },
                    "post": {
                        "operationId": "createThing",
                        "summary": "Create",
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                        "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
                    }
                },
                "/things/{id}": {
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "get": {
                        "operationId": "getThing",
                        "summary": "Get",
                        "responses": {
                            "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                            "default": {"$ref": "#/components/responses/Error"}
                        }
                    },
                    "delete": {
                        "operationId": "deleteThing",
                        "summary": "Delete",
                        "responses": {"204": {"description": "gone"}}
                    }
                },
                "/things/special": {
                    "get": {
                        "operationId": "special",
                        "summary": "Special",
                        "responses": {"200": {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}}
                    }
                }
            },
            "components": {
                "responses": {
                    "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                },
                "schemas": {
                    "Thing": {
                        "type": "object", "additionalProperties": false, "required": ["id", "size"],
                        "properties": {"id": {"type": "string", "pattern": "^t_"}, "size": {"type": "integer"}},
                        "examples": [{"id": "t_1", "size": 3}]
                    },
                    "Error": {
                        "type": "object", "additionalProperties": false, "required": ["error"],
                        "properties": {"error": {"type": "string"}}
                    }
                }
            }
        })
    }

    fn tiny_validator() -> Validator {
        Validator::new(tiny()).unwrap()
    }

    #[test]
    fn a_conforming_response_passes() {
        let v = tiny_validator();
        v.validate_response(
            "GET",
            "/things",
            200,
            &json!({"items": [{"id": "t_1", "size": 1}]}),
        )
        .unwrap();
        v.validate_response(
            "get",
            "/things/t_9?x=1",
            200,
            &json!({"id": "t_9", "size": 2}),
        )
        .unwrap();
        v.validate_response(
            "GET",
            "http://127.0.0.1:1/things/{id}",
            200,
            &json!({"id": "t_9", "size": 2}),
        )
        .unwrap();
        v.validate_response("DELETE", "/things/t_9", 204, &Value::Null)
            .unwrap();
        v.validate_response("GET", "/things/special", 200, &json!("text"))
            .unwrap();
    }

    #[test]
    fn a_wrong_body_is_rejected_with_where_and_why() {
        let v = tiny_validator();
        // A nested item through a component reference: wrong type, extra property.
        let err = v
            .validate_response(
                "GET",
                "/things",
                200,
                &json!({"items": [{"id": "t_1", "size": "big", "colour": "red"}]}),
            )
            .unwrap_err();
        assert!(err.contains("GET /things (listThings) status 200"), "{err}");
        assert!(err.contains("/items/0/size"), "{err}");
        assert!(err.contains("colour"), "{err}");
        // A pattern of a component.
        let err = v
            .validate_response("GET", "/things/x", 200, &json!({"id": "nope", "size": 1}))
            .unwrap_err();
        assert!(err.contains("/id"), "{err}");
        // A body where the document has none, and none where it has one.
        let err = v
            .validate_response("DELETE", "/things/x", 204, &json!({}))
            .unwrap_err();
        assert!(err.contains("no body"), "{err}");
        assert!(
            v.validate_response("GET", "/things/x", 200, &Value::Null)
                .is_err()
        );
    }

    #[test]
    fn an_undocumented_status_is_rejected() {
        let v = tiny_validator();
        let err = v
            .validate_response("GET", "/things", 404, &json!({"error": "x"}))
            .unwrap_err();
        assert!(err.contains("status 404"), "{err}");
        assert!(err.contains("documented: 200, 400"), "{err}");
        // Statuses without an exact entry fall back to `default`, which is then checked.
        v.validate_response("GET", "/things/x", 404, &json!({"error": "x"}))
            .unwrap();
        assert!(
            v.validate_response("GET", "/things/x", 500, &json!({"oops": 1}))
                .is_err()
        );
        // A response by reference is followed.
        v.validate_response("GET", "/things", 400, &json!({"error": "bad"}))
            .unwrap();
        assert!(
            v.validate_response("GET", "/things", 400, &json!({"error": 1}))
                .is_err()
        );
    }

    #[test]
    fn undocumented_routes_are_rejected() {
        let v = tiny_validator();
        let err = v
            .validate_response("PUT", "/things/x", 200, &json!({}))
            .unwrap_err();
        assert!(
            err.contains("PUT /things/x is not documented; the path has DELETE, GET"),
            "{err}"
        );
        let err = v
            .validate_response("GET", "/nothing", 200, &json!({}))
            .unwrap_err();
        assert!(
            err.contains("no path of the document matches `/nothing`"),
            "{err}"
        );
        assert!(
            v.validate_response("GET", "/things/", 200, &json!({}))
                .is_err()
        );
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        let v = tiny_validator();
        assert_eq!(v.operation_id("GET", "/things/special"), Some("special"));
        assert_eq!(v.operation_id("GET", "/things/other"), Some("getThing"));
    }

    #[test]
    #[should_panic(expected = "does not conform to the OpenAPI document")]
    fn check_panics_with_the_reason() {
        tiny_validator().check("GET", "/things", 418, &Value::Null);
    }

    #[test]
    fn raw_responses_are_checked_for_their_content_type() {
        let v = tiny_validator();
        v.validate_raw_response(
            "GET",
            "/things/x",
            200,
            Some("application/json; charset=utf-8"),
            br#"{"id":"t_1","size":1}"#,
        )
        .unwrap();
        v.validate_raw_response("DELETE", "/things/x", 204, None, b"")
            .unwrap();
        v.validate_raw_response("GET", "/things/special", 200, Some("text/plain"), b"hi")
            .unwrap();
        let err = v
            .validate_raw_response("GET", "/things/x", 200, Some("text/html"), b"<p>")
            .unwrap_err();
        assert!(
            err.contains("content type `text/html` is not documented"),
            "{err}"
        );
        let err = v
            .validate_raw_response("GET", "/things/x", 200, Some("application/json"), b"{")
            .unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
    }

    #[test]
    fn request_bodies_are_checked() {
        let v = tiny_validator();
        v.validate_request("POST", "/things", &json!({"id": "t_1", "size": 1}))
            .unwrap();
        assert!(
            v.validate_request("POST", "/things", &json!({"id": "t_1"}))
                .is_err()
        );
        assert!(v.validate_request("POST", "/things", &Value::Null).is_err());
        assert!(v.validate_request("GET", "/things", &json!({})).is_err());
    }

    #[test]
    fn the_tiny_document_has_no_problems_and_a_broken_one_has_them_all() {
        assert_eq!(document_problems(&tiny()), Vec::<String>::new());

        let mut broken = tiny();
        let paths = broken["paths"].as_object_mut().unwrap();
        paths["/things"]["get"]
            .as_object_mut()
            .unwrap()
            .remove("operationId");
        paths["/things/{id}"]["delete"]["operationId"] = json!("getThing");
        paths["/things/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
            json!({"$ref": "#/components/schemas/Missing"});
        paths["/things/{id}"]
            .as_object_mut()
            .unwrap()
            .remove("parameters");
        paths["/things/special"]["get"]["responses"] = json!({});
        broken["components"]["schemas"]["Thing"]["examples"] = json!([{"id": "t_1"}]);
        broken["components"]["schemas"]["Error"]
            .as_object_mut()
            .unwrap()
            .remove("additionalProperties");
        let problems = document_problems(&broken).join("\n");
        for expected in [
            "GET /things: no operationId",
            "operationId `getThing` is used twice",
            "`$ref` \"#/components/schemas/Missing\" does not resolve",
            "path parameter `id` is not declared",
            "GET /things/special: no responses",
            "example 0 of schema Thing",
            "#/components/schemas/Error: an object schema with `properties` must set `additionalProperties`",
        ] {
            assert!(
                problems.contains(expected),
                "missing {expected:?} in:\n{problems}"
            );
        }
    }

    #[test]
    fn the_service_document_is_valid() {
        let path = document_path();
        let document = load_document(&path);
        let problems = document_problems(&document);
        assert!(
            problems.is_empty(),
            "{} has problems:\n{}",
            path.display(),
            problems.join("\n")
        );
        // Every operation of the service is there, each checked with real-looking bodies.
        let v = Validator::new(document).unwrap();
        assert_eq!(v.routes().len(), 52, "{:#?}", v.routes());
        let folder = "fld_01jd3x5m8k2q7r9t4v6w0y1z3e";
        v.check(
            "GET",
            "/v1/oauth/redirect-uri",
            200,
            &json!({"redirect_uri": "https://junction.example.com/v1/oauth/callback"}),
        );
        v.check(
            "GET",
            "/v1/oauth/callback",
            200,
            &json!({"connection_id": "con_01jd3x5m8k2q7r9t4v6w0y1z3e", "connection_name": "crm",
                    "connector": "probe", "health": "healthy", "scopes": ["read"],
                    "expires_at": null, "refresh_token": true, "warnings": []}),
        );
        v.check(
            "GET",
            "/v1/oauth/callback",
            400,
            &json!({"error": {"code": "missing_scopes", "message": "the grant lacks the mandatory scope: audit",
                              "details": {"provider_error": "missing_scopes", "missing_scopes": ["audit"]}}}),
        );
        v.check("GET", "/healthz", 200, &json!({"status": "ok"}));
        v.check(
            "GET",
            "/readyz",
            503,
            &json!({"error": {"code": "unavailable", "message": "shutting down", "details": {}}}),
        );
        v.check(
            "GET",
            "/metrics",
            200,
            &json!("# TYPE junction_active_instances gauge\n"),
        );
        v.check(
            "GET",
            &format!("/v1/folders/{folder}"),
            403,
            &json!({"error": {"code": "forbidden", "message": "no", "details": {"permission": "view", "folder_id": folder}}}),
        );
        // The status restricts the code.
        assert!(
            v.validate_response(
                "GET",
                "/v1/me",
                401,
                &json!({"error": {"code": "forbidden", "message": "m", "details": {}}})
            )
            .is_err()
        );
        // A response with an unknown property is drift.
        let mut tenant = json!({"id": "ten_01jd3x5m8k2q7r9t4v6w0y1z3a", "name": "Acme",
            "members_can_create_shared_connections": false, "created_at": "2026-11-22T10:00:00.123Z"});
        v.check("GET", "/v1/tenant", 200, &tenant);
        tenant["plan"] = json!("gold");
        assert!(
            v.validate_response("GET", "/v1/tenant", 200, &tenant)
                .is_err()
        );
        // Connector failures must say which invocation failed.
        let failure = json!({"error": {"code": "upstream", "message": "m", "details": {
            "source": "connector", "connector": "github@1.0.0", "invocation_id": "inv_01jd3x5m8k2q7r9t4v6w0y1z3h"}}});
        v.check(
            "POST",
            "/v1/connections/con_01jd3x5m8k2q7r9t4v6w0y1z3g/invocations",
            502,
            &failure,
        );
        let mut bare = failure.clone();
        bare["error"]["details"] = json!({});
        assert!(
            v.validate_response(
                "POST",
                "/v1/connections/con_01jd3x5m8k2q7r9t4v6w0y1z3g/invocations",
                502,
                &bare
            )
            .is_err()
        );
        v.check(
            "DELETE",
            "/v1/connections/con_01jd3x5m8k2q7r9t4v6w0y1z3g",
            204,
            &Value::Null,
        );
        v.check_request(
            "POST",
            "/v1/connections",
            &json!({"connector": "github", "name": "gh", "fields": {"token": "x"}}),
        );
    }

    /// The routes of the service's router are those of the document, both ways. Enforced as
    /// soon as `host/src/lib.rs` declares the `api` module (before, there is no router).
    #[test]
    fn the_service_routes_match_the_document() {
        let lib = std::fs::read_to_string(api_source_dir().join("../lib.rs")).unwrap();
        let declared = lib_declares_api(&lib);
        if !declared {
            eprintln!("host/src/lib.rs has no `mod api`: no router to compare yet");
            return;
        }
        let in_code = routes_in_source(&api_source_dir());
        let in_document = routes_in_document(&load_document(&document_path()));
        assert_same_routes(&in_code, &in_document);
    }

    fn lib_declares_api(lib: &str) -> bool {
        let toks = strip_cfg_test(lex(lib).unwrap());
        toks.windows(3).any(|w| {
            w[0].0 == Tok::Ident("mod".into())
                && w[1].0 == Tok::Ident("api".into())
                && matches!(w[2].0, Tok::Punct(';' | '{'))
        })
    }

    #[test]
    fn an_api_module_is_recognised() {
        assert!(lib_declares_api("pub mod runtime;\npub mod api;\n"));
        assert!(lib_declares_api("pub(crate) mod api;"));
        assert!(!lib_declares_api("// mod api;\npub mod apis;\n"));
    }

    #[test]
    fn routes_are_read_from_rust_source() {
        let src = r##"
            use axum::routing::{self, get, post};
            // .route("/commented", get(nothing))
            /* .route("/block", get(nothing)) /* nested */ */
            pub fn router(state: AppState) -> Router {
                let s = "a .route(\"/in-a-string\", get(x)) string";
                let r = r#"raw .route("/raw", get(x))"#;
                let c = '"';
                Router::new()
                    .route("/healthz", get(healthz))
                    .route(
                        "/v1/connections/{id}",
                        get(connections::get)
                            .patch(connections::update)
                            .delete(|Path(id): Path<String>| async move { drop(id) }),
                    )
                    .route("/v1/folders", routing::post(folders::create).get(folders::list).layer(limit(1, 2)),)
                    .route("/v1/openapi.json", axum::routing::get_service(openapi))
                    .fallback(no_route)
                    .with_state(state)
            }
            fn helper<'a>(x: &'a str) -> &'a str { x }
            #[cfg(test)]
            mod tests {
                fn t() { Router::new().route("/test-only", get(t)); }
            }
        "##;
        let routes: BTreeSet<Route> = routes_in_rust(src).unwrap().into_iter().collect();
        let expected: BTreeSet<Route> = [
            ("GET", "/healthz"),
            ("GET", "/v1/connections/{id}"),
            ("PATCH", "/v1/connections/{id}"),
            ("DELETE", "/v1/connections/{id}"),
            ("POST", "/v1/folders"),
            ("GET", "/v1/folders"),
            ("GET", "/v1/openapi.json"),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
        assert_eq!(routes, expected);
    }

    #[test]
    fn routes_that_cannot_be_read_are_reported_with_their_line() {
        let err = routes_in_rust("fn r() {\n Router::new().nest(\"/v1\", v1())\n}").unwrap_err();
        assert!(err.starts_with("2: `.nest(…)`"), "{err}");
        let err = routes_in_rust("Router::new().route(PATH, get(x))").unwrap_err();
        assert!(err.contains("string literal"), "{err}");
        let err = routes_in_rust("Router::new().route(\"/x\", handlers)").unwrap_err();
        assert!(
            err.contains("cannot tell the methods of route `/x`"),
            "{err}"
        );
        let err = routes_in_rust("Router::new().route(\"/x\", any(h))").unwrap_err();
        assert!(err.contains("cannot tell the methods"), "{err}");
    }

    #[test]
    fn route_differences_are_listed_both_ways() {
        let set = |routes: &[(&str, &str)]| -> BTreeSet<Route> {
            routes
                .iter()
                .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
                .collect()
        };
        let code = set(&[("GET", "/a"), ("POST", "/b")]);
        let doc = set(&[("GET", "/a"), ("GET", "/c")]);
        let err = route_diff(&code, &doc).unwrap_err();
        assert!(err.contains("in the code, not in the document (document them in host/src/api/openapi.json):\n  POST /b\n"), "{err}");
        assert!(err.contains("in the document, not in the code (route them, or remove them from the document):\n  GET /c\n"), "{err}");
        route_diff(&code, &code).unwrap();
    }
}
