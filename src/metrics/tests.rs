use super::*;

/// Other tests of this process may have counted events already: the series must be there,
/// whatever their values.
#[test]
fn event_counters_are_exported_before_their_first_event() {
    let handle = install();
    register_router_series();
    register_kube_series(&KubeApiOp::ROUTER);
    register_npc_series();
    let text = handle.render();
    let mut expected = vec![
        format!("{TERMINATIONS} "),
        format!("{OVERLAY_FALLBACKS} "),
        format!("{IPAM_SPLIT_BRAIN} "),
        format!("{KUBE_RECLAIMS} "),
    ];
    expected.extend(
        RefusalKind::ALL
            .iter()
            .map(|kind| format!("{REFUSED}{{reason=\"{}\"}} ", kind.as_str())),
    );
    expected.extend(
        AuthFailure::ALL
            .iter()
            .map(|failure| format!("{AUTH_FAILURES}{{reason=\"{}\"}} ", failure.as_str())),
    );
    expected.extend(
        DropReason::ALL
            .iter()
            .map(|reason| format!("{DROPPED}{{reason=\"{}\"}} ", reason.as_str())),
    );
    expected.extend(
        ActorKind::ALL
            .iter()
            .map(|actor| format!("{RESTARTS}{{actor=\"{actor}\"}} ")),
    );
    expected.extend(
        KubeApiOp::ROUTER
            .iter()
            .chain(&KubeApiOp::NPC)
            .map(|op| format!("{KUBE_API_ERRORS}{{op=\"{}\"}} ", op.as_str())),
    );
    expected.extend(
        SyncResult::ALL
            .iter()
            .map(|result| format!("{NPC_SYNCS}{{result=\"{}\"}} ", result.as_str())),
    );
    expected.push(format!("{NPC_SYNC_SECONDS}_count "));
    let missing: Vec<&String> = expected
        .iter()
        .filter(|series| !text.lines().any(|line| line.starts_with(series.as_str())))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{text}");
}

/// Each policy counts under its own name until the bound, then under "other".
#[test]
fn blocked_connections_by_policy_have_a_bounded_label_set() {
    // npc's direction, as its own enum labels the series (this module sits below npc).
    #[derive(Clone, Copy)]
    enum Direction {
        Ingress,
        Egress,
    }
    impl LabelValue for Direction {
        fn label(self) -> &'static str {
            match self {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            }
        }
    }
    let handle = install();
    npc_blocked_by_policy("x/deny-ingress", Direction::Ingress);
    npc_blocked_by_policy("x/deny-ingress", Direction::Ingress);
    npc_blocked_by_policy("x/deny-ingress", Direction::Egress);
    for index in 0..NPC_BLOCKED_POLICY_LABELS + 10 {
        npc_blocked_by_policy(&format!("many/p{index}"), Direction::Egress);
    }
    let text = handle.render();
    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(&format!("{NPC_BLOCKED_BY_POLICY}{{")))
        .collect();
    let value = |labels: &str| {
        series
            .iter()
            .find(|line| line.contains(labels))
            .and_then(|line| line.rsplit(' ').next())
            .map(|value| value.parse::<f64>().unwrap())
    };
    assert_eq!(
        value("policy=\"x/deny-ingress\",direction=\"ingress\"")
            .or(value("direction=\"ingress\",policy=\"x/deny-ingress\"")),
        Some(2.0),
        "{series:?}"
    );
    assert!(
        series.len() <= NPC_BLOCKED_POLICY_LABELS + 2,
        "{} series",
        series.len()
    );
    assert!(
        series.iter().any(|line| line.contains("policy=\"other\"")),
        "past the bound: other"
    );
}
