//! The data plane: the inbound and outbound sidecar paths live here (ENGINEERING.md, layout).
//! For now only the pure header rules exist; listeners, handlers and upstream clients follow.

pub mod headers;
