//! Policy (placeholder until written).
