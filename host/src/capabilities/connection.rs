//! `junction:connector/connection`: non-secret fields in clear, secret fields only as an
//! HMAC key or, when the manifest lists them in `reveal-fields`, in clear.

use crate::runtime::bindings::v0_1_0::junction::connector::connection;
use crate::runtime::bindings::v0_1_0::junction::connector::types::ConnectorError;
use crate::runtime::bindings::{denied, invalid_input};
use crate::runtime::connection::PreparedConnection;
use crate::runtime::manifest::Manifest;
use crate::runtime::state::InvocationState;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::instrument;
use wasmtime::component::{HasData, Linker};

/// What the connection capability sees of an invocation.
#[derive(Debug)]
pub struct ConnectionView<'a> {
    pub manifest: &'a Manifest,
    pub connection: &'a PreparedConnection,
}

struct HasConnection;
impl HasData for HasConnection {
    type Data<'a> = ConnectionView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    connection::add_to_linker::<_, HasConnection>(linker, InvocationState::connection_view)
}

impl ConnectionView<'_> {
    fn declared(&self, name: &str) -> Result<&crate::runtime::manifest::Field, ConnectorError> {
        self.manifest
            .field(name)
            .ok_or_else(|| invalid_input(format!("the manifest declares no field `{name}`")))
    }

    /// The value of a non-secret field. Secret fields are refused.
    pub fn field(&self, name: &str) -> Result<Option<String>, ConnectorError> {
        if self.declared(name)?.secret {
            return Err(denied(format!(
                "field `{name}` is secret: the host attaches it to requests or signs with it (`hmac-sha256`); list it in `reveal-fields` to read it"
            )));
        }
        Ok(self.connection.field(name).map(str::to_owned))
    }

    /// HMAC-SHA256 keyed with a secret field.
    pub fn hmac_sha256(&self, name: &str, message: &[u8]) -> Result<Vec<u8>, ConnectorError> {
        if !self.declared(name)?.secret {
            return Err(invalid_input(format!(
                "field `{name}` is not secret; sign with a secret field"
            )));
        }
        let key = self
            .connection
            .secret(name)
            .ok_or_else(|| invalid_input(format!("secret field `{name}` is not set")))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
            .map_err(|_| invalid_input("the HMAC key is unusable"))?;
        mac.update(message);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    /// The clear value of a secret field listed in `reveal-fields`.
    pub fn reveal(&self, name: &str) -> Result<String, ConnectorError> {
        let field = self.declared(name)?;
        if !field.secret {
            return self
                .field(name)?
                .ok_or_else(|| invalid_input(format!("field `{name}` is not set")));
        }
        if !self.manifest.reveal_fields.iter().any(|f| f == name) {
            return Err(denied(format!(
                "secret field `{name}` is not listed in the manifest's `reveal-fields`"
            )));
        }
        self.connection
            .secret(name)
            .map(|s| s.expose().to_owned())
            .ok_or_else(|| invalid_input(format!("secret field `{name}` is not set")))
    }
}

impl connection::Host for ConnectionView<'_> {
    #[instrument(level = "debug", skip(self))]
    fn field(&mut self, name: String) -> wasmtime::Result<Result<Option<String>, ConnectorError>> {
        Ok(ConnectionView::field(self, &name))
    }

    #[instrument(level = "debug", skip(self, message), fields(message_len = message.len()))]
    fn hmac_sha256(
        &mut self,
        secret_field: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, ConnectorError>> {
        Ok(ConnectionView::hmac_sha256(self, &secret_field, &message))
    }

    #[instrument(level = "debug", skip(self))]
    fn reveal(&mut self, name: String) -> wasmtime::Result<Result<String, ConnectorError>> {
        Ok(ConnectionView::reveal(self, &name))
    }
}
