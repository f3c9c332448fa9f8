//! Write Junction connectors in plain Rust.
//!
//! A connector is a WebAssembly component that runs inside the Junction host. It never
//! touches the network, the disk or a secret directly: it asks the host, through this crate,
//! to send HTTP requests (the host attaches the credentials), to read non-secret connection
//! fields and to sign messages with secret ones.
//!
//! ```ignore
//! use junction_sdk::prelude::*;
//!
//! struct Echo;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Input { text: String }
//!
//! #[derive(Serialize, JsonSchema)]
//! struct Output { text: String }
//!
//! fn echo(input: Input) -> Result<Output> {
//!     Ok(Output { text: input.text })
//! }
//!
//! impl Connector for Echo {
//!     fn manifest() -> Manifest {
//!         Manifest::new("echo", env!("CARGO_PKG_VERSION"))
//!             .title("Echo")
//!             .action("echo", "Echo", "Returns its input.", echo)
//!     }
//!     fn test_connection() -> Result<()> { Ok(()) }
//! }
//!
//! export_connector!(Echo);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is the component.

pub mod connection;
mod error;
pub mod http;
pub mod log;
mod manifest;

pub use error::{Error, Result};
pub use manifest::{
    Action, Auth, Field, KeyLocation, Manifest, Release, Trigger, TriggerKind, WebhookRequest,
    WebhookResponse,
};
pub use schemars::JsonSchema;
pub use serde::{Deserialize, Serialize};
pub use serde_json::{self, Value, json};

/// What a connector crate usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        Auth, Connector, Deserialize, Error, Field, JsonSchema, KeyLocation, Manifest, Release,
        Result, Serialize, Trigger, TriggerKind, Value, connection, export_connector, http, json,
        log,
    };
}

/// Generated bindings for `junction:connector@0.1.0`. Not part of the SDK's API: connector
/// code uses the safe wrappers of this crate instead.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "junction:connector/connector@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "junction_sdk::__bindings",
    });
}

/// A page of events returned by a polling trigger.
#[derive(Debug, Default)]
pub struct PollResult {
    /// The events, oldest first.
    pub events: Vec<Value>,
    /// Where the next poll starts; `None` keeps the previous cursor.
    pub cursor: Option<String>,
}

/// A connector: its manifest (which lists the actions with their handlers) and the
/// entry points the host calls besides actions. Only `manifest` and `test_connection` are
/// required; the trigger entry points default to an error for connectors without triggers.
pub trait Connector {
    /// Describes the connector. Called by the host when it loads the component, and on
    /// every invocation to find the action's handler, so keep it cheap and pure: schemas
    /// are generated only when the host asks for the manifest.
    fn manifest() -> Manifest;

    /// Checks that the connection works: credentials valid, base URL reachable.
    fn test_connection() -> Result<()>;

    /// Fetches new events of a polling trigger after `cursor`.
    fn poll(trigger: &str, config: Value, cursor: Option<String>) -> Result<PollResult> {
        let _ = (config, cursor);
        Err(Error::invalid_input(format!(
            "this connector has no polling trigger named `{trigger}`"
        )))
    }

    /// Registers a webhook upstream that calls `callback_url`; returns state kept by the host.
    fn subscribe(trigger: &str, config: Value, callback_url: &str) -> Result<Value> {
        let _ = (config, callback_url);
        Err(Error::invalid_input(format!(
            "this connector has no webhook trigger named `{trigger}`"
        )))
    }

    /// Removes a webhook registered by `subscribe`.
    fn unsubscribe(trigger: &str, config: Value, state: Value) -> Result<()> {
        let _ = (config, state);
        Err(Error::invalid_input(format!(
            "this connector has no webhook trigger named `{trigger}`"
        )))
    }

    /// Verifies and decodes an incoming webhook call.
    fn handle_webhook(
        trigger: &str,
        config: Value,
        request: WebhookRequest,
    ) -> Result<WebhookResponse> {
        let _ = (config, request);
        Err(Error::invalid_input(format!(
            "this connector has no webhook trigger named `{trigger}`"
        )))
    }
}

/// Exports a type implementing [`Connector`] as the component's `junction:connector` world.
/// Call it once, at the root of the connector crate.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        #[doc(hidden)]
        pub struct __JunctionExport;

        impl $crate::__bindings::exports::junction::connector::guest::Guest for __JunctionExport {
            fn manifest() -> $crate::__bindings::junction::connector::types::ConnectorManifest {
                $crate::__private::manifest::<$connector>()
            }
            fn execute(
                action: ::std::string::String,
                input: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::execute::<$connector>(&action, &input)
            }
            fn test_connection() -> ::std::result::Result<
                (),
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::test_connection::<$connector>()
            }
            fn poll(
                trigger: ::std::string::String,
                config: ::std::string::String,
                cursor: ::std::option::Option<::std::string::String>,
            ) -> ::std::result::Result<
                $crate::__bindings::junction::connector::types::PollResult,
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::poll::<$connector>(&trigger, &config, cursor)
            }
            fn subscribe(
                trigger: ::std::string::String,
                config: ::std::string::String,
                callback_url: ::std::string::String,
            ) -> ::std::result::Result<
                ::std::string::String,
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::subscribe::<$connector>(&trigger, &config, &callback_url)
            }
            fn unsubscribe(
                trigger: ::std::string::String,
                config: ::std::string::String,
                state: ::std::string::String,
            ) -> ::std::result::Result<
                (),
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::unsubscribe::<$connector>(&trigger, &config, &state)
            }
            fn handle_webhook(
                trigger: ::std::string::String,
                config: ::std::string::String,
                request: $crate::__bindings::junction::connector::types::WebhookRequest,
            ) -> ::std::result::Result<
                $crate::__bindings::junction::connector::types::WebhookResult,
                $crate::__bindings::junction::connector::types::ConnectorError,
            > {
                $crate::__private::handle_webhook::<$connector>(&trigger, &config, request)
            }
        }

        $crate::__bindings::export!(__JunctionExport);
    };
}

/// Glue called by [`export_connector!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::__bindings::junction::connector::types as wit;
    use crate::{Connector, Error, Value};

    fn parse_config(what: &str, text: &str) -> Result<Value, Error> {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(text)
            .map_err(|e| Error::invalid_input(format!("the {what} is not valid JSON: {e}")))
    }

    pub fn manifest<C: Connector>() -> wit::ConnectorManifest {
        C::manifest().into_wit()
    }

    pub fn execute<C: Connector>(action: &str, input: &str) -> Result<String, wit::ConnectorError> {
        C::manifest().run_action(action, input).map_err(Into::into)
    }

    pub fn test_connection<C: Connector>() -> Result<(), wit::ConnectorError> {
        C::test_connection().map_err(Into::into)
    }

    pub fn poll<C: Connector>(
        trigger: &str,
        config: &str,
        cursor: Option<String>,
    ) -> Result<wit::PollResult, wit::ConnectorError> {
        let config = parse_config("trigger configuration", config)?;
        let page = C::poll(trigger, config, cursor)?;
        Ok(wit::PollResult {
            events: page.events.iter().map(Value::to_string).collect(),
            cursor: page.cursor,
        })
    }

    pub fn subscribe<C: Connector>(
        trigger: &str,
        config: &str,
        callback_url: &str,
    ) -> Result<String, wit::ConnectorError> {
        let config = parse_config("trigger configuration", config)?;
        Ok(C::subscribe(trigger, config, callback_url)?.to_string())
    }

    pub fn unsubscribe<C: Connector>(
        trigger: &str,
        config: &str,
        state: &str,
    ) -> Result<(), wit::ConnectorError> {
        let config = parse_config("trigger configuration", config)?;
        let state = parse_config("subscription state", state)?;
        C::unsubscribe(trigger, config, state).map_err(Into::into)
    }

    pub fn handle_webhook<C: Connector>(
        trigger: &str,
        config: &str,
        request: wit::WebhookRequest,
    ) -> Result<wit::WebhookResult, wit::ConnectorError> {
        let config = parse_config("trigger configuration", config)?;
        let request = crate::WebhookRequest {
            method: request.method,
            path: request.path,
            headers: request.headers,
            body: request.body,
        };
        let response = C::handle_webhook(trigger, config, request)?;
        Ok(wit::WebhookResult {
            events: response.events.iter().map(Value::to_string).collect(),
            status: response.status,
            body: response.body,
        })
    }
}
