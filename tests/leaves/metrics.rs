//! `metrics`: the `/metrics` text a Prometheus server scrapes: every metric has its `# HELP`
//! and `# TYPE` lines, counters (and only counters) end in `_total`, and the figures of the
//! loop's counters and gauges, labelled ones included, are in it.

use pollchat::connection::CloseReason;
use pollchat::metrics::render;
use pollchat::stats::{Gauges, Stats};

#[test]
fn every_metric_has_help_and_type_and_counters_end_in_total() {
    let mut stats = Stats {
        lines_in: 7,
        ..Stats::default()
    };
    stats.count_disconnect(&CloseReason::Idle);
    stats.count_closed(&CloseReason::TooSlow { limit: 1024 }, "TLS");
    stats.count_http(404);
    let gauges = Gauges {
        connections_now: 3,
        clients: 2,
        clients_by_transport: [("WebSocket", 2)].into_iter().collect(),
        rooms: 1,
        backplane: serde_json::value::to_raw_value(
            &serde_json::json!({"state": "up", "published": 5}),
        )
        .ok(),
        moderation: [("kick", 2), ("ban", 4)].into_iter().collect(),
        state: Some(pollchat::state::Stats {
            fsyncs: 3,
            ..Default::default()
        }),
    };
    let text = render(&stats, &gauges);
    assert!(text.contains("pollchat_lines_in_total 7\n"), "{text}");
    assert!(text.contains("pollchat_clients_by_transport{transport=\"WebSocket\"} 2\n"));
    assert!(text.contains("pollchat_clients_by_transport{transport=\"plain\"} 0\n"));
    assert!(text.contains("pollchat_disconnects_total{reason=\"idle\"} 1\n"));
    assert!(text.contains("pollchat_disconnects_total{reason=\"too_slow\"} 1\n"));
    let by_transport =
        "pollchat_disconnects_by_transport_total{reason=\"too_slow\",transport=\"TLS\"} 1\n";
    assert!(text.contains(by_transport), "{text}");
    assert!(text.contains("pollchat_http_responses_total{code=\"404\"} 1\n"));
    assert!(text.contains("pollchat_backplane_state{state=\"up\"} 1\n"));
    assert!(text.contains("pollchat_backplane_published_total 5\n"));
    assert!(text.contains("pollchat_state_fsyncs_total 3\n"), "{text}");
    assert!(text.contains("pollchat_moderation_total{action=\"kick\"} 2\n"));
    assert!(text.contains("pollchat_moderation_total{action=\"oper\"} 0\n"));
    assert!(text.contains("pollchat_moderation_total{action=\"ban\"} 4\n"));
    assert!(text.contains("pollchat_moderation_total{action=\"unban\"} 0\n"));
    let mut typed = std::collections::HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split(' ').skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        typed.insert(name.to_string(), kind.to_string());
    }
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let name = sample.split(['{', ' ']).next().unwrap();
        assert!(typed.contains_key(name), "{sample} has no # TYPE");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{sample} has no # HELP"
        );
    }
}
