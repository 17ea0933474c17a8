//! Fixtures shared by the integration tests.

pub mod policy_gen;
