//! X509-SVID leaf rules (placeholder until written).
/// Direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// client
    Client,
    /// server
    Server,
}
/// Svid.
#[derive(Debug)]
pub struct Svid;
/// Error.
#[derive(Debug)]
pub enum SvidError {}
