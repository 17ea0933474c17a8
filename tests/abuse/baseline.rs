//! The reference for every latency bound here: the normal client alone, for as long as an
//! attack lasts, against an idle sidecar on the same (shared, loaded) machine. Asserted: it is
//! served, slowest answer under 100 ms; its figures show how much of an attack's latency is
//! the machine's.

use std::time::Duration;

use crate::harness::{Probe, SERIAL, Target, figures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_attack_the_normal_client_is_served_quickly() {
    let _serial = SERIAL.lock().await;
    let target = Target::start("").await;
    let probe = Probe::start(&target).await;
    let before = target.usage();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let latency = probe.stop().await;
    let after = target.usage();
    figures(
        "baseline (no attack)",
        &format!("{}; {}", after.describe_since(&before), latency.describe()),
    );
    latency.assert_served(Duration::from_millis(100));
}
