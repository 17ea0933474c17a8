//! PKI (placeholder until written).
