//! segward's one integration-test binary (CONTRIBUTING.md "Test layout"): each module tells one
//! story against the public API; `support` holds the fixtures they share.
#![allow(clippy::unwrap_used)]

mod support;

mod admin_reach;
mod blast_radius;
mod cli;
mod compose;
mod contain;
mod containment_conns;
mod demo;
mod docs;
mod evidence;
mod evidence_props;
mod exceptions;
mod expiry;
mod ext_authz;
mod ext_authz_envoy;
mod fixtures_selftest;
mod fleet;
mod inbound;
mod kubernetes;
mod loops;
mod operability;
mod outbound;
mod policy_props;
mod postgres;
mod probes;
mod reach_props;
mod reload;
mod run;
mod signing;
mod slice_cmd;
mod slice_fleet;
mod slice_gzip;
mod slice_props;
mod slice_sidecar;
mod tcp;
mod tcp_limits;
mod workload_api;
mod yaml_fast;
