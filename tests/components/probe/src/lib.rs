//! The sandbox probe: a connector whose actions use each capability and, on request, break
//! the rules (spin forever, eat memory, panic, reach for a file, a variable or a socket).
//! The host's tests drive it to prove the sandbox holds.

// Reading the whole linear memory (`scan-memory`) needs raw pointer reads.
#![allow(unsafe_code)]

use junction_sdk::http::{Method, Request};
use junction_sdk::prelude::*;
use std::collections::BTreeMap;

struct Probe;

#[derive(Deserialize, JsonSchema)]
struct Empty {}

#[derive(Deserialize, JsonSchema)]
struct EchoInput {
    value: Value,
}

#[derive(Serialize, JsonSchema)]
struct NoteOutput {
    note: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct FetchInput {
    /// Absolute URL, or a path below `base_url`.
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    times: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
struct FetchOutput {
    status: u16,
    body_len: usize,
    body: String,
}

#[derive(Serialize, JsonSchema)]
struct Attempt {
    succeeded: bool,
    detail: String,
}

#[derive(Deserialize, JsonSchema)]
struct LogInput {
    lines: u32,
    text: String,
    /// A revealed field whose value is added to every line.
    #[serde(default)]
    reveal: Option<String>,
    /// Panic with the text once it is printed.
    #[serde(default)]
    then_panic: bool,
}

#[derive(Deserialize, JsonSchema)]
struct HmacInput {
    field: String,
    message: String,
}

#[derive(Serialize, JsonSchema)]
struct HmacOutput {
    hex: String,
}

#[derive(Deserialize, JsonSchema)]
struct FieldInput {
    name: String,
}

#[derive(Deserialize, JsonSchema)]
struct ScanInput {
    /// Path below `base_url` to call first, so the host attaches the credentials.
    path: String,
    /// Needles as (length, polynomial hash): the probe never holds the needle itself.
    needles: Vec<(usize, u64)>,
}

#[derive(Serialize, JsonSchema)]
struct ScanOutput {
    /// Occurrences of each needle in linear memory.
    hits: Vec<usize>,
    scanned_bytes: usize,
}

fn url_for(path: &str) -> Result<String> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return Ok(path.to_owned());
    }
    let base = connection::field_or("base_url", "")?;
    Ok(format!("{}{}", base.trim_end_matches('/'), path))
}

fn echo(input: EchoInput) -> Result<Value> {
    Ok(input.value)
}

/// No I/O and one host call: what the benchmark measures.
fn note(_: Empty) -> Result<NoteOutput> {
    Ok(NoteOutput {
        note: connection::field("note")?,
    })
}

fn field(input: FieldInput) -> Result<NoteOutput> {
    Ok(NoteOutput {
        note: connection::field(&input.name)?,
    })
}

fn reveal(input: FieldInput) -> Result<NoteOutput> {
    Ok(NoteOutput {
        note: Some(connection::reveal(&input.name)?),
    })
}

fn fetch(input: FetchInput) -> Result<FetchOutput> {
    let method = match input.method.as_deref().unwrap_or("GET") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        other => return Err(Error::invalid_input(format!("method {other}"))),
    };
    let url = url_for(&input.url)?;
    let mut last = None;
    for _ in 0..input.times.unwrap_or(1) {
        let mut request = Request::new(method, url.clone());
        for (k, v) in &input.headers {
            request = request.header(k, v);
        }
        last = Some(request.send()?);
    }
    let response = last.ok_or_else(|| Error::invalid_input("times must be at least 1"))?;
    Ok(FetchOutput {
        status: response.status,
        body_len: response.body.len(),
        body: response.text().chars().take(200).collect(),
    })
}

#[derive(Deserialize, JsonSchema)]
struct BurnInput {
    iterations: u64,
}

fn burn(input: BurnInput) -> Result<Value> {
    let mut h = 0u64;
    for i in 0..input.iterations {
        h = std::hint::black_box(h.wrapping_mul(BASE).wrapping_add(i));
    }
    Ok(json!({ "hash": h }))
}

fn spin(_: Empty) -> Result<Value> {
    let mut i = 0u64;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

fn allocate(_: Empty) -> Result<Value> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn panic(_: Empty) -> Result<Value> {
    panic!("the probe panicked on purpose");
}

fn read_file(_: Empty) -> Result<Attempt> {
    Ok(match std::fs::read_to_string("/etc/passwd") {
        Ok(text) => Attempt {
            succeeded: true,
            detail: text,
        },
        Err(e) => Attempt {
            succeeded: false,
            detail: e.to_string(),
        },
    })
}

fn read_env(_: Empty) -> Result<Attempt> {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let home = std::env::var("HOME");
    Ok(Attempt {
        succeeded: !vars.is_empty() || home.is_ok(),
        detail: format!("{} variables; HOME: {home:?}", vars.len()),
    })
}

#[derive(Deserialize, JsonSchema)]
struct SocketInput {
    address: String,
}

fn open_socket(input: SocketInput) -> Result<Attempt> {
    Ok(match std::net::TcpStream::connect(&input.address) {
        Ok(_) => Attempt {
            succeeded: true,
            detail: "connected".into(),
        },
        Err(e) => Attempt {
            succeeded: false,
            detail: e.to_string(),
        },
    })
}

fn print(input: LogInput) -> Result<Value> {
    let text = match &input.reveal {
        Some(field) => format!("{} {}", input.text, connection::reveal(field)?),
        None => input.text.clone(),
    };
    for i in 0..input.lines {
        log::info(&format!("{text} #{i}"));
    }
    println!("stdout: {text}");
    eprintln!("stderr: {text}");
    if input.then_panic {
        panic!("{text}");
    }
    Ok(json!({}))
}

fn hmac(input: HmacInput) -> Result<HmacOutput> {
    let mac = connection::hmac_sha256(&input.field, input.message.as_bytes())?;
    Ok(HmacOutput {
        hex: mac.iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// Polynomial hash with wrapping arithmetic; the tests compute the same natively.
const BASE: u64 = 1_099_511_628_211;

fn scan_memory(input: ScanInput) -> Result<ScanOutput> {
    // Pull a non-secret field into memory (the tests' control needle), then make a request
    // so the host attaches the credentials somewhere, then look for every needle.
    let _note = std::hint::black_box(connection::field("note")?);
    let response = Request::get(url_for(&input.path)?).send()?;
    std::hint::black_box(&response);
    #[cfg(target_arch = "wasm32")]
    let size = core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    let size = 0usize;
    let read = |addr: usize| -> u8 {
        // SAFETY: every address below `memory.size` is readable linear memory in wasm32.
        unsafe { core::ptr::read_volatile(addr as *const u8) }
    };
    let mut hits = Vec::new();
    for &(len, needle) in &input.needles {
        let mut count = 0;
        if len > 0 && size > len + 1 {
            let top = BASE.wrapping_pow(len as u32 - 1);
            let mut hash = 0u64;
            for addr in 1..=len {
                hash = hash.wrapping_mul(BASE).wrapping_add(read(addr) as u64);
            }
            let mut start = 1;
            loop {
                if hash == needle {
                    count += 1;
                }
                let next = start + len;
                if next >= size {
                    break;
                }
                hash = hash
                    .wrapping_sub((read(start) as u64).wrapping_mul(top))
                    .wrapping_mul(BASE)
                    .wrapping_add(read(next) as u64);
                start += 1;
            }
        }
        hits.push(count);
    }
    Ok(ScanOutput {
        hits,
        scanned_bytes: size,
    })
}

impl Connector for Probe {
    fn manifest() -> Manifest {
        Manifest::new("probe", "0.1.0")
            .title("Sandbox probe")
            .description("Exercises the host's capabilities and limits.")
            .field(Field::text("base_url", "Base URL").default_value("http://127.0.0.1:9"))
            .field(Field::text("note", "A note that is not secret").optional())
            .field(Field::text("second_url", "Another origin the probe may reach").optional())
            .field(Field::secret("token", "Token").schemes(["bearer"]))
            .field(Field::secret("api_key", "API key").schemes(["header-key", "query-key"]))
            .field(Field::text("username", "User").schemes(["basic", "oauth-password"]))
            .field(Field::secret("password", "Password").schemes(["basic", "oauth-password"]))
            .field(Field::text("issuer", "OAuth provider").schemes([
                "oauth",
                "oauth-audit",
                "oauth-password",
                "oauth-service",
            ]))
            .field(Field::secret("signing_key", "Webhook signing key").optional())
            .field(Field::secret("shown_key", "A secret the probe may read").optional())
            .auth(Auth::bearer("bearer", "Token", "token"))
            .auth(Auth::api_key(
                "header-key",
                "Key in header",
                "api_key",
                KeyLocation::Header,
                "X-API-Key",
            ))
            .auth(Auth::api_key(
                "query-key",
                "Key in query",
                "api_key",
                KeyLocation::Query,
                "api_key",
            ))
            .auth(Auth::basic(
                "basic",
                "User and password",
                "username",
                "password",
            ))
            .auth(Auth::none("none", "No credentials"))
            // OAuth 2.0 against the suite's authorization server, whose address is a field.
            // `prompt=consent` makes the provider issue a refresh token (offline access).
            .auth(
                Auth::oauth2_code(
                    "oauth",
                    "OAuth 2.0",
                    "{issuer}/auth?prompt=consent",
                    "{issuer}/token",
                )
                .scopes(["offline_access"])
                .mandatory_scopes(["read"]),
            )
            // A scope the provider never grants: every grant lacks it.
            .auth(
                Auth::oauth2_code(
                    "oauth-audit",
                    "OAuth 2.0 with audit access",
                    "{issuer}/auth?prompt=consent",
                    "{issuer}/token",
                )
                .scopes(["offline_access"])
                .mandatory_scopes(["read", "audit"]),
            )
            .auth(
                Auth::oauth2_password(
                    "oauth-password",
                    "OAuth 2.0 password",
                    "{issuer}/token",
                    "username",
                    "password",
                )
                .scopes(["offline_access"])
                .mandatory_scopes(["read"]),
            )
            .auth(
                Auth::oauth2_client_credentials(
                    "oauth-service",
                    "OAuth 2.0 client credentials",
                    "{issuer}/token",
                )
                .mandatory_scopes(["read"]),
            )
            .allowed_host("{base_url}")
            .allowed_host("{second_url}")
            .reveal_field("shown_key")
            .action("echo", "Echo", "Returns its input.", echo)
            .action(
                "note",
                "Note",
                "Returns the `note` field: one host call.",
                note,
            )
            .action("field", "Field", "Returns a field by name.", field)
            .action(
                "reveal",
                "Reveal",
                "Returns a secret field by name.",
                reveal,
            )
            .action(
                "fetch",
                "Fetch",
                "Sends requests and reports the last response.",
                fetch,
            )
            .action("spin", "Spin", "Loops forever.", spin)
            .action(
                "burn",
                "Burn",
                "Computes for a number of iterations, then answers.",
                burn,
            )
            .action("allocate", "Allocate", "Allocates until stopped.", allocate)
            .action("panic", "Panic", "Panics.", panic)
            .action(
                "read-file",
                "Read a file",
                "Tries to read /etc/passwd.",
                read_file,
            )
            .action(
                "read-env",
                "Read the environment",
                "Tries to read variables.",
                read_env,
            )
            .action(
                "open-socket",
                "Open a socket",
                "Tries a TCP connection.",
                open_socket,
            )
            .action("print", "Print", "Logs and prints.", print)
            .action("hmac", "HMAC", "Signs with a secret field.", hmac)
            .action(
                "scan-memory",
                "Scan memory",
                "Counts needles in linear memory.",
                scan_memory,
            )
    }

    fn test_connection() -> Result<()> {
        Request::get(url_for("/ping")?).send()?.error_for_status()?;
        Ok(())
    }
}

export_connector!(Probe);
