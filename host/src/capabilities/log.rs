//! `junction:connector/log`: guest log lines become host tracing events tagged with the
//! connector, with the connection's secrets scrubbed (a connector shown a field through
//! `reveal-fields` may log it). A per-invocation byte budget keeps a chatty connector from
//! flooding the log.

use crate::runtime::bindings::v0_1_0::junction::connector::log::{self, Level};
use crate::runtime::connection::PreparedConnection;
use crate::runtime::limits::ConnectorId;
use crate::runtime::state::InvocationState;
use tracing::instrument;
use wasmtime::component::{HasData, Linker};

/// What the log capability sees of an invocation.
#[derive(Debug)]
pub struct LogView<'a> {
    pub connector: &'a ConnectorId,
    /// Whose secrets are scrubbed from the lines.
    pub connection: &'a PreparedConnection,
    /// Bytes the guest may still log.
    pub budget: &'a mut usize,
}

struct HasLog;
impl HasData for HasLog {
    type Data<'a> = LogView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<InvocationState>) -> wasmtime::Result<()> {
    log::add_to_linker::<_, HasLog>(linker, InvocationState::log_view)
}

/// Emits one line of guest output, tagged with the connector.
pub fn emit(connector: &ConnectorId, level: Level, message: &str) {
    let connector = connector.to_string();
    match level {
        Level::Trace => tracing::trace!(target: "junction::guest", %connector, "{message}"),
        Level::Debug => tracing::debug!(target: "junction::guest", %connector, "{message}"),
        Level::Info => tracing::info!(target: "junction::guest", %connector, "{message}"),
        Level::Warn => tracing::warn!(target: "junction::guest", %connector, "{message}"),
        Level::Error => tracing::error!(target: "junction::guest", %connector, "{message}"),
    }
}

/// Takes up to `budget` bytes of `message` (on a character boundary); `None` once the
/// budget is spent.
pub(crate) fn take_budget<'m>(budget: &mut usize, message: &'m str) -> Option<&'m str> {
    if *budget == 0 {
        return None;
    }
    let mut end = message.len().min(*budget);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    *budget -= end.max(1).min(*budget);
    Some(&message[..end])
}

impl log::Host for LogView<'_> {
    #[instrument(level = "trace", skip_all)]
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let was_open = *self.budget > 0;
        // Scrubbed whole, then cut: a cut line could leave most of a secret unmatched.
        let message = self.connection.scrub_str(message);
        if let Some(text) = take_budget(self.budget, &message) {
            emit(self.connector, level, text);
        }
        if was_open && *self.budget == 0 {
            tracing::warn!(
                target: "junction::guest",
                connector = %self.connector,
                "log budget of this invocation spent; further guest log lines are dropped"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::take_budget;

    #[test]
    fn the_log_budget_cuts_on_a_character_boundary_and_then_drops() {
        let mut budget = 5;
        assert_eq!(take_budget(&mut budget, "abcé"), Some("abcé"));
        assert_eq!(budget, 0);
        assert_eq!(take_budget(&mut budget, "more"), None);
        let mut budget = 4;
        assert_eq!(take_budget(&mut budget, "abcé"), Some("abc"));
    }
}
