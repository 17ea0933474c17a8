use super::*;

const WINDOW: Duration = Duration::from_secs(60);

fn get(path: &str) -> Target<'_> {
    Target {
        destination: "spiffe://example.org/ns/prod/sa/api",
        method: "GET",
        path,
    }
}

fn id(n: usize) -> String {
    format!("spiffe://example.org/ns/noise/sa/n{n}")
}

#[test]
fn the_nth_distinct_denied_target_is_a_probe_and_not_before() {
    let mut t = Tracker::new(5, WINDOW, 64);
    let now = Instant::now();
    let prober = "spiffe://example.org/ns/prod/sa/leaked";
    for (i, path) in ["/a", "/b", "/c", "/d"].iter().enumerate() {
        assert_eq!(t.observe(prober, &get(path), now), Observed::Counted(i + 1));
    }
    match t.observe(prober, &get("/e"), now) {
        Observed::Detected(targets) => {
            assert_eq!(targets.len(), 5);
            assert_eq!(&*targets[0], "GET spiffe://example.org/ns/prod/sa/api /a");
        }
        other => panic!("{other:?}"),
    }
    // Detection forgets the source: it starts again from one.
    assert_eq!(t.observe(prober, &get("/f"), now), Observed::Counted(1));
}

#[test]
fn a_repeated_denied_request_counts_once_and_methods_and_destinations_are_distinct() {
    let mut t = Tracker::new(3, WINDOW, 64);
    let now = Instant::now();
    for _ in 0..1000 {
        assert_eq!(
            t.observe("spiffe://x/a", &get("/admin"), now),
            Observed::Counted(1)
        );
    }
    let post = Target {
        method: "POST",
        ..get("/admin")
    };
    assert_eq!(t.observe("spiffe://x/a", &post, now), Observed::Counted(2));
    let tcp = Target {
        destination: "spiffe://example.org/ns/prod/sa/db",
        method: "",
        path: "",
    };
    assert!(matches!(
        t.observe("spiffe://x/a", &tcp, now),
        Observed::Detected(ref targets) if &*targets[2] == "tcp spiffe://example.org/ns/prod/sa/db"
    ));
}

#[test]
fn targets_older_than_the_window_no_longer_count() {
    let mut t = Tracker::new(3, WINDOW, 64);
    let start = Instant::now();
    assert_eq!(
        t.observe("spiffe://x/a", &get("/1"), start),
        Observed::Counted(1)
    );
    assert_eq!(
        t.observe("spiffe://x/a", &get("/2"), start),
        Observed::Counted(2)
    );
    let later = start + WINDOW + Duration::from_secs(1);
    assert_eq!(
        t.observe("spiffe://x/a", &get("/3"), later),
        Observed::Counted(1)
    );
    assert!(t.suspects(later + WINDOW).is_empty());
}

#[test]
fn a_hundred_thousand_cycling_identities_stay_within_the_bound_and_a_probe_among_them_is_caught() {
    let capacity = 1024;
    let mut t = Tracker::new(5, WINDOW, capacity);
    let now = Instant::now();
    let prober = "spiffe://example.org/ns/prod/sa/leaked";
    let mut detected = false;
    for n in 0..100_000 {
        // The prober's first two targets come early: from then on it is mid-probe, and the
        // 100k noise sources cannot evict it; its last three come in the middle of the noise.
        match n {
            10 => assert_eq!(t.observe(prober, &get("/p1"), now), Observed::Counted(1)),
            11 => assert_eq!(t.observe(prober, &get("/p2"), now), Observed::Counted(2)),
            30_000 | 60_000 => assert!(matches!(
                t.observe(prober, &get(&format!("/p{n}")), now),
                Observed::Counted(_)
            )),
            90_000 => {
                detected = matches!(t.observe(prober, &get("/p5"), now), Observed::Detected(_));
            }
            _ => {}
        }
        t.observe(&id(n), &get("/admin"), now);
        assert!(t.len() <= capacity);
    }
    assert!(detected, "the probe in the noise was caught");
    assert!(
        t.used_bytes() <= t.bound_bytes(),
        "{} > {}",
        t.used_bytes(),
        t.bound_bytes()
    );
    // A burst from a fresh identity in the middle of the noise is caught too.
    let burst = "spiffe://example.org/ns/prod/sa/burst";
    for p in 0..4 {
        t.observe(burst, &get(&format!("/b{p}")), now);
        t.observe(&id(200_000 + p), &get("/admin"), now);
    }
    assert!(matches!(
        t.observe(burst, &get("/b4"), now),
        Observed::Detected(_)
    ));
}

#[test]
fn a_table_full_of_mid_probe_sources_leaves_new_ones_untracked_until_the_window_frees_it() {
    let mut t = Tracker::new(5, WINDOW, 16);
    let now = Instant::now();
    for n in 0..16 {
        t.observe(&id(n), &get("/1"), now);
        t.observe(&id(n), &get("/2"), now);
    }
    assert_eq!(t.observe(&id(99), &get("/1"), now), Observed::Untracked);
    assert_eq!(t.untracked(), 1);
    // Every tracked source is still there, still counting.
    assert_eq!(t.observe(&id(3), &get("/3"), now), Observed::Counted(3));
    let later = now + WINDOW + Duration::from_secs(2);
    assert_eq!(t.observe(&id(99), &get("/1"), later), Observed::Counted(1));
    assert!(t.len() <= 16);
}

#[test]
fn long_texts_are_cut_for_display_but_compared_whole() {
    let mut t = Tracker::new(2, WINDOW, 16);
    let now = Instant::now();
    let long = "/a".repeat(400);
    let (a, b) = (format!("{long}/x"), format!("{long}/y"));
    assert_eq!(
        t.observe("spiffe://x/a", &get(&a), now),
        Observed::Counted(1)
    );
    match t.observe("spiffe://x/a", &get(&b), now) {
        Observed::Detected(targets) => {
            assert!(targets.iter().all(|t| t.len() <= TARGET_TEXT_MAX));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_documented_bound_of_the_default_table_holds() {
    // docs/probes.md#bounded-state: "at most about 14.2 MB" with the defaults.
    let t = Tracker::new(5, WINDOW, 4096);
    assert!(t.bound_bytes() <= 14_200_000, "{}", t.bound_bytes());
    // Filled with the longest IDs and targets, it stays within that bound.
    let mut t = Tracker::new(5, WINDOW, 64);
    let now = Instant::now();
    let long_path = format!("/{}", "p".repeat(4000));
    for n in 0..64 {
        let source = format!("spiffe://example.org/{n:04}/{}", "s".repeat(2100));
        for k in 0..4 {
            t.observe(&source, &get(&format!("{long_path}/{k}")), now);
        }
    }
    assert_eq!(t.len(), 64);
    assert!(
        t.used_bytes() <= t.bound_bytes(),
        "{} > {}",
        t.used_bytes(),
        t.bound_bytes()
    );
}
