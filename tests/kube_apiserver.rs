//! The Kubernetes harness against a real kube-apiserver v1.20.2: it serves Nodes with labels and
//! addresses as JSON (a server built without the reflect2 fix dies encoding the first label), the
//! router's identity gets exactly the access its RBAC grants, from a node over the underlay, and
//! the cluster's state outlives a restart of the API server.

mod kubelab;
use weft_testkit::netlab;

use std::time::{Duration, Instant};

use kubelab::KubeApi;
use netlab::{Lab, Node, wait_until};
use serde_json::{Value, json};

/// A request with the router's token from its node, as the router makes it.
fn as_router(
    api: &KubeApi,
    node: &Node,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    api.request_from(&node.ns, api.router_token(), method, path, body)
}

#[test]
fn apiserver_serves_nodes_and_survives_a_restart() {
    let started = Instant::now();
    let mut lab = Lab::new("kubeapi");
    let node1 = lab.node(1);
    let mut api = KubeApi::new(&mut lab);
    let up = started.elapsed();

    api.create_node("node1", &node1.ip);
    let node = api.node("node1").expect("node1 was created");
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "node1");
    assert_eq!(
        node["status"]["addresses"],
        json!([{"type": "InternalIP", "address": node1.ip}])
    );

    let kubeconfig = std::fs::read_to_string(api.router_kubeconfig()).unwrap();
    assert!(kubeconfig.contains("server: https://198.51.100.2:6443"));
    assert!(kubeconfig.contains(&format!("token: {}", api.router_token())));

    // Authenticated (403, not 401), and allowed nothing yet.
    assert_eq!(as_router(&api, &node1, "GET", "/api/v1/nodes", None).0, 403);
    api.grant_router_rbac();
    // The authorizer sees the new bindings through its informers: a moment later.
    let may_list_nodes = || as_router(&api, &node1, "GET", "/api/v1/nodes", None).0 == 200;
    assert!(
        wait_until(Duration::from_secs(10), may_list_nodes),
        "the router may not list nodes after the grant"
    );
    let (_, nodes) = as_router(&api, &node1, "GET", "/api/v1/nodes", None);
    assert_eq!(nodes["items"][0]["metadata"]["name"], "node1");
    // Pods, namespaces and policies are readable (weave-npc, the second container, shares the
    // ServiceAccount), but not writable.
    assert_eq!(as_router(&api, &node1, "GET", "/api/v1/pods", None).0, 200);
    let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    assert_eq!(
        as_router(
            &api,
            &node1,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some(&pod)
        )
        .0,
        403
    );
    let secrets = "/api/v1/namespaces/kube-system/secrets";
    assert_eq!(as_router(&api, &node1, "GET", secrets, None).0, 403);
    let configmaps = "/api/v1/namespaces/kube-system/configmaps";
    let state = json!({"metadata": {"name": "weave-net"}, "data": {"peers": "node1"}});
    let (created, _) = as_router(&api, &node1, "POST", configmaps, Some(&state));
    assert_eq!(created, 201);
    let other = format!("{configmaps}/other");
    assert_eq!(as_router(&api, &node1, "GET", &other, None).0, 403);
    let stored = api.configmap("kube-system", "weave-net").expect("created");
    assert_eq!(stored["data"]["peers"], "node1");

    let outage = Instant::now();
    api.stop();
    assert_eq!(api.request("GET", "/readyz", None).0, 0);
    assert_eq!(as_router(&api, &node1, "GET", "/api/v1/nodes", None).0, 0);
    api.start();
    let restart = outage.elapsed();
    let node = api.node("node1").expect("node1 survives the restart");
    assert_eq!(node["status"]["addresses"][0]["address"], node1.ip.as_str());
    assert_eq!(as_router(&api, &node1, "GET", "/api/v1/nodes", None).0, 200);

    api.delete_node("node1");
    assert!(api.node("node1").is_none());
    eprintln!(
        "kube_apiserver: up in {:.1} s, restarted in {:.1} s, all in {:.1} s",
        up.as_secs_f64(),
        restart.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
