//! What an operator relies on: health endpoints, plain log files, and the per-user bound on
//! WebSocket sessions.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_without_a_session() {
    let node = TestNode::start().await;
    let (status, body) = get_json(&format!("{}/healthz", node.base_url())).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "healthz: {body}");
    let (status, body) = get_json(&format!("{}/readyz", node.base_url())).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")), "readyz: {body}");
    // Control: a path the node does not serve is not "ok", so the checks above can fail.
    let response = reqwest::get(format!("{}/api/v1/healthz", node.base_url())).await.expect("GET");
    assert_eq!(response.status().as_u16(), 404, "only /healthz at the root is the health check");
}

/// Lines with an ANSI escape (colour codes) among the node's log lines.
fn coloured_lines(log: &str) -> usize {
    log.lines().filter(|line| line.contains('\u{1b}')).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    // The harness pipes stderr, as `serve > node.log 2>&1` does; NO_COLOR (set in CI) is taken
    // away so that only the terminal check keeps the colours out.
    let plain_opts = NodeOptions {
        name: "plain".into(),
        env_remove: vec!["NO_COLOR".into()],
        ..NodeOptions::default()
    };
    let plain = TestNode::start_with(plain_opts).await;
    let (status, _) = get_json(&format!("{}/healthz", plain.base_url())).await;
    assert_eq!(status, 200);
    let log = plain.log_tail(200);
    assert!(log.lines().count() > 1, "the node logged its start: {log}");
    assert_eq!(coloured_lines(&log), 0, "no ANSI codes in a piped log:\n{log}");

    // Control: with colours forced, the same check finds them.
    let forced_opts = NodeOptions {
        name: "coloured".into(),
        env_remove: vec!["NO_COLOR".into()],
        extra_args: vec!["--log-color".into(), "always".into()],
        ..NodeOptions::default()
    };
    let forced = TestNode::start_with(forced_opts).await;
    let log = forced.log_tail(200);
    assert!(coloured_lines(&log) > 0, "--log-color always colours the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sessions_per_user_are_bounded() {
    let (_node, clients) =
        setup_with_config(&["alice", "bob"], "[limits]\nwebsocket_connections_per_user_max = 2\n")
            .await;
    let (alice, bob) = (&clients[0], &clients[1]);
    let first = alice.ws_ok(None).await;
    let _second = alice.ws_ok(None).await;
    let refused = match alice.ws(None).await {
        Ok(_) => panic!("a third session of alice must be refused"),
        Err(error) => error,
    };
    assert!(
        refused.message.contains("too many connections: at most 2 per user"),
        "the close reason says why: {refused}"
    );
    assert!(refused.message.contains("Policy"), "closed with 1008 policy violation: {refused}");
    let _bob = bob.ws_ok(None).await;

    // A closed session frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match alice.ws(None).await {
            Ok(_) => break,
            Err(error) if Instant::now() < deadline => {
                assert!(error.message.contains("too many connections"), "{error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("alice's place was not freed after closing a session: {error}"),
        }
    }
}

/// `POST /auth/login` from 127.0.0.1 with `X-Forwarded-For: forwarded_for`: the status.
async fn login_forwarded(
    node: &TestNode,
    username: &str,
    password: &str,
    forwarded_for: &str,
) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", node.base_url()))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("login request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let (node, _clients) = setup(&["alice", "bob"]).await;
    for i in 1..=10 {
        let status =
            login_forwarded(&node, "alice", "wrong password", &format!("203.0.113.{i}")).await;
        assert_eq!(status, 401, "failure {i}");
    }
    // Every request came from 127.0.0.1, whatever the header claimed: that address is locked,
    // for bob too.
    assert_eq!(login_forwarded(&node, "bob", PASSWORD, "198.51.100.7").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_each_client_for_the_login_limit() {
    let (node, _clients) =
        setup_with_config(&["alice", "bob"], "trusted_proxies = [\"127.0.0.1\"]\n").await;
    for i in 1..=10 {
        let status = login_forwarded(&node, "alice", "wrong password", "203.0.113.1").await;
        assert_eq!(status, 401, "failure {i}");
    }
    // The one client behind the proxy that failed is locked out; the others are not.
    assert_eq!(login_forwarded(&node, "bob", PASSWORD, "203.0.113.1").await, 429, "locked client");
    assert_eq!(login_forwarded(&node, "bob", PASSWORD, "203.0.113.2").await, 200, "other client");
    // The client's own claim further left is not believed: the proxy saw 203.0.113.1.
    let spoofed = login_forwarded(&node, "bob", PASSWORD, "203.0.113.9, 203.0.113.1").await;
    assert_eq!(spoofed, 429, "a prepended address does not escape the lock");
    // alice's account is locked, but she gets in from a client that has not failed.
    assert_eq!(login_forwarded(&node, "alice", PASSWORD, "203.0.113.3").await, 200, "owner");
}

const METRICS_TOKEN: &str = "a-metrics-token-for-the-test";

/// `GET /metrics` with `token` as bearer (none: no header): the status and the text.
async fn scrape(node: &TestNode, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", node.base_url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The value of the sample `line_start` (name and labels) in an exposition.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_and_move_with_traffic() {
    let (node, clients) =
        setup_with_config(&["alice", "bob"], &format!("metrics_token = \"{METRICS_TOKEN}\"\n"))
            .await;
    assert_eq!(scrape(&node, None).await.0, 401, "no token");
    assert_eq!(scrape(&node, Some("a-metrics-token-for-the-tesT")).await.0, 401, "wrong token");
    let (status, before) = scrape(&node, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{before}");
    for name in [
        "confab_http_requests_total",
        "confab_websocket_sessions",
        "confab_messages_written_total",
        "confab_engine_queue_depth",
        "confab_engine_group_intents_bucket",
        "confab_engine_flush_seconds_bucket",
        "confab_push_outcomes_total",
        "confab_push_queued",
    ] {
        assert!(before.contains(name), "{name} in the exposition:\n{before}");
    }

    let (alice, bob) = (&clients[0], &clients[1]);
    let chat = public_channel(alice, "general", &[bob]).await;
    let _socket = bob.ws_ok(None).await;
    let (_, before) = scrape(&node, Some(METRICS_TOKEN)).await;
    let written_before = sample(&before, "confab_messages_written_total").expect("messages");
    for i in 0..3 {
        alice.send(&chat.id, &format!("hello {i}")).await.must("send");
    }
    let (_, after) = scrape(&node, Some(METRICS_TOKEN)).await;
    let written_after = sample(&after, "confab_messages_written_total").expect("messages");
    assert_eq!(written_after - written_before, 3.0, "three messages written:\n{after}");
    let route =
        "confab_http_requests_total{route=\"/api/v1/chats/{chat_id}/messages\",status=\"201\"}";
    assert_eq!(sample(&after, route), Some(3.0), "the sends, by route and status:\n{after}");
    assert_eq!(sample(&after, "confab_websocket_sessions"), Some(1.0), "bob's session:\n{after}");
    let flushes = sample(&after, "confab_engine_flush_seconds_count").expect("flushes");
    assert!(flushes >= 3.0, "each durable send was flushed:\n{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_without_a_token() {
    let node = TestNode::start().await;
    let response = reqwest::get(format!("{}/metrics", node.base_url())).await.expect("GET");
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["code"], "metrics_off", "{body}");
}

/// Runs `confab-bench` with `args` (split at spaces) against a node of its own; returns its
/// stdout lines.
fn run_bench(args: &str) -> Vec<String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(args.split_whitespace())
        .arg("--node-bin")
        .arg(confab_tests::node_binary())
        .output()
        .expect("run confab-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "confab-bench {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).expect("UTF-8").lines().map(str::to_string).collect()
}

/// `<scope> <figure> <value>` lines as (scope, figure) → value; panics on any other line.
fn figures(lines: &[String]) -> std::collections::HashMap<(String, String), String> {
    lines
        .iter()
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "not a `<scope> <figure> <value>` line: {line:?}");
            ((parts[0].to_string(), parts[1].to_string()), parts[2].to_string())
        })
        .collect()
}

fn figure<'a>(
    figures: &'a std::collections::HashMap<(String, String), String>,
    scope: &str,
    name: &str,
) -> &'a str {
    figures
        .get(&(scope.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no `{scope} {name}` figure in {figures:?}"))
}

/// The load generator's output is one figure per line that a script can read, for each
/// workload, and the figures are the run's (every fan-out delivered, none refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_prints_one_line_per_figure() {
    let steady = figures(&run_bench("--workload steady --users 3 --messages 4 --rate 20"));
    assert_eq!(figure(&steady, "steady", "sent"), "12");
    assert_eq!(figure(&steady, "steady", "deliveries"), "24");
    assert_eq!(figure(&steady, "steady", "deliveries_expected"), "24");
    assert_eq!(figure(&steady, "steady", "errors"), "0");
    for name in ["fanout_p50_ms", "fanout_p99_ms", "cpu_ms_per_msg", "rss_peak_mib"] {
        let value = figure(&steady, "steady", name);
        assert!(value.parse::<f64>().is_ok_and(|v| v >= 0.0), "steady {name} {value}");
    }
    figure(&steady, "run", "rss_peak_mib");

    let flood = figures(&run_bench(concat!(
        "--workload flood --users 2 --flood-start 20 --flood-max 30 --step-secs 0.5 ",
        "--p99-target-ms 5000"
    )));
    assert_eq!(figure(&flood, "flood@20", "errors"), "0");
    // Both steps pass unless the machine stalls twice in one of them.
    let sustained = figure(&flood, "flood", "sustained_msg_per_s");
    assert!(["20", "30"].contains(&sustained), "flood sustained_msg_per_s {sustained}");

    let large = figures(&run_bench(
        "--workload large --large-members 5 --large-online 3 --large-senders 2 --large-messages 2",
    ));
    assert_eq!(figure(&large, "large", "members"), "5");
    assert_eq!(figure(&large, "large", "deliveries_expected"), "8");
    assert_eq!(figure(&large, "large", "deliveries"), "8");
    for name in ["fanout_p99_ms", "chat_list_ms_median", "first_page_ms_median"] {
        let value = figure(&large, "large", name);
        assert!(value.parse::<f64>().is_ok_and(|v| v >= 0.0), "large {name} {value}");
    }
}
