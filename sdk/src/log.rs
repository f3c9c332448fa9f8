//! Logging through the host, which tags every line with the connector, its version and the
//! invocation. Never log a secret: the connector does not hold any, so that is easy.

use crate::__bindings::junction::connector::log::{Level, log};

pub fn trace(message: &str) {
    log(Level::Trace, message);
}
pub fn debug(message: &str) {
    log(Level::Debug, message);
}
pub fn info(message: &str) {
    log(Level::Info, message);
}
pub fn warn(message: &str) {
    log(Level::Warn, message);
}
pub fn error(message: &str) {
    log(Level::Error, message);
}
