//! Lints (placeholder).
