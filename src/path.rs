//! Path normalization (placeholder until written).
