//! Restarts, the admin CLI, and kill -9 during a send burst.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

/// Points `c` at the restarted node; logs in again if its session did not survive.
/// Returns whether the old session still worked.
async fn reconnect(c: &mut Client, node: &TestNode, username: &str) -> bool {
    c.rebase(&node.base_url());
    match c.me().await {
        Ok(u) => {
            assert_eq!(u.username, username, "the kept session is still {username}'s");
            true
        }
        Err(e) if e.status == 401 => {
            c.login(username, PASSWORD).await.must("login after restart");
            false
        }
        Err(e) => panic!("me after restart: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_keeps_everything() {
    let (mut node, mut cl) = setup(&["alice", "bob"]).await;
    let (general, dm, secret, sent, read_at) = {
        let (alice, bob) = (&cl[0], &cl[1]);
        alice.patch_me(json!({"display_name": "Alice", "team": "core"})).await.must("profile");
        let general = public_channel(alice, "general", &[bob]).await;
        let (_, dm) = alice.dm(&["bob@local"]).await.must("dm");
        let secret = alice.create_channel("secret", "private").await.must("private");
        alice.invite(&secret.id, "bob@local", None).await.must("invite");
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(alice.send(&general.id, &format!("g{i}")).await.must("send"));
        }
        let e = alice.edit(&general.id, &sent[1].id, "g1 edited").await.must("edit");
        sent[1] = e;
        let d = alice.delete(&general.id, &sent[2].id).await.must("delete");
        sent[2] = d;
        bob.send(&dm.id, "dm text").await.must("dm");
        alice.send(&secret.id, "secret text").await.must("secret");
        bob.read(&general.id, &sent[3].id).await.must("read marker");
        alice.set_registration_open(false).await.must("close registration");
        let read_at = sent[3].id.clone();
        (general, dm, secret, sent, read_at)
    };

    let status = node.terminate().await;
    assert!(status.success(), "SIGTERM must shut down gracefully with exit 0, got {status}");
    node.start_again().await;

    let alice_kept = reconnect(&mut cl[0], &node, "alice").await;
    let bob_kept = reconnect(&mut cl[1], &node, "bob").await;
    eprintln!("sessions survive a graceful restart: alice={alice_kept} bob={bob_kept}");
    let (alice, bob) = (&cl[0], &cl[1]);

    let me = alice.me().await.must("me");
    assert!(me.is_admin, "admin flag kept");
    assert_eq!((me.display_name.as_str(), me.team.as_str()), ("Alice", "core"), "profile kept");
    let mut users: Vec<_> = alice.users().await.must("users").into_iter().map(|u| u.id).collect();
    users.sort();
    assert_eq!(users, vec!["alice@local", "bob@local"]);
    assert!(!alice.admin_settings().await.must("settings").registration_open, "settings kept");

    let chans = bob.channels().await.must("channels");
    assert!(chans.iter().any(|c| c.id == general.id && c.joined), "public channel kept");
    assert!(chans.iter().any(|c| c.id == secret.id && c.joined), "private membership kept");
    let members = bob.members(&secret.id).await.must("members");
    assert_eq!(members.len(), 2);

    let hist = bob.history(&general.id, &HistoryQuery::default()).await.must("history");
    let got: Vec<_> =
        hist.messages.iter().map(|m| (m.id.clone(), m.body.clone(), m.deleted)).collect();
    let want: Vec<_> = sent.iter().map(|m| (m.id.clone(), m.body.clone(), m.deleted)).collect();
    assert_eq!(got, want, "messages, edits and deletes survive a restart");
    assert_eq!(bob.history(&dm.id, &HistoryQuery::default()).await.must("dm").messages.len(), 1);
    let e = bob.chat_entry(&general.id).await.must("entry").expect("listed");
    assert_eq!(e.last_read.as_deref(), Some(read_at.as_str()), "read marker kept");
    assert_eq!(e.unread_count, 1, "one message after the marker (g4): {e:?}");

    let m = alice.send(&general.id, "after restart").await.must("send after restart");
    assert!(m.id > sent[4].id, "ids keep growing across restarts");
    let mut ws = bob.ws_ok(None).await;
    let m2 = alice.send(&general.id, "live after restart").await.must("send");
    ws.wait_created(&m2.id).await;

    let status = node.interrupt().await;
    assert!(status.success(), "SIGINT must shut down gracefully with exit 0, got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_creates_and_lists_users() {
    let mut node =
        TestNode::new_stopped(NodeOptions { name: "cli".into(), ..NodeOptions::default() });
    let out = node.cli_user_create("root", PASSWORD, true);
    assert!(
        out.status.success(),
        "user create --admin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.cli_user_create("dave", PASSWORD, false);
    assert!(out.status.success(), "user create failed: {}", String::from_utf8_lossy(&out.stderr));
    let out = node.cli_user_create("dave", PASSWORD, false);
    assert!(!out.status.success(), "creating a taken username must fail");
    let out = node.cli_user_create("Bad Name", PASSWORD, false);
    assert!(!out.status.success(), "an invalid username must fail");
    let out = node.cli_user_list();
    assert!(out.status.success(), "user list failed: {}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("root") && listing.contains("dave"),
        "user list shows both users: {listing}"
    );

    node.start_again().await;
    let root = Client::for_node(&node);
    assert!(root.login("root", PASSWORD).await.must("root login").is_admin);
    let dave = Client::for_node(&node);
    assert!(!dave.login("dave", PASSWORD).await.must("dave login").is_admin);
    // With users present, a web registration is not the first and is no admin.
    let eve = Client::for_node(&node);
    assert!(!eve.register("eve", PASSWORD).await.must("register").is_admin);
}

enum Sender {
    Http(Client),
    Ws(Client),
}

/// Sends until the node dies (or `stop`), reporting each acknowledged (id, body).
async fn run_sender(
    s: Sender,
    chat_id: String,
    tag: String,
    stop: Arc<AtomicBool>,
    acks: mpsc::UnboundedSender<(String, String)>,
) {
    match s {
        Sender::Http(c) => {
            for n in 0..5000u32 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let body = format!("{tag} n{n} http");
                match c.send(&chat_id, &body).await {
                    Ok(m) => {
                        assert_eq!(m.body, body, "ack carries the body sent");
                        let _ = acks.send((m.id, body));
                    }
                    Err(_) => return,
                }
            }
        }
        Sender::Ws(c) => {
            // Pipelined: up to WINDOW send frames in flight, so acks of batched writes are
            // exercised too.
            const WINDOW: u32 = 8;
            let Ok(mut ws) = c.ws(None).await else { return };
            for w in 0..600u32 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let mut pending: HashMap<String, String> = HashMap::new();
                for k in 0..WINDOW {
                    let n = w * WINDOW + k;
                    let body = format!("{tag} n{n} ws");
                    let cid = format!("{tag}-{n}");
                    let frame = json!({"type": "send", "client_id": cid, "chat_id": chat_id,
                                       "body": body, "reply_to": null});
                    if ws.send_json(&frame).await.is_err() {
                        return;
                    }
                    pending.insert(cid, body);
                }
                while !pending.is_empty() {
                    let ack = ws
                        .try_wait_for(Duration::from_secs(10), |v| {
                            matches!(ev_type(v), "ack" | "error")
                                && v.get("client_id")
                                    .and_then(|x| x.as_str())
                                    .is_some_and(|c| pending.contains_key(c))
                        })
                        .await;
                    let Some(ack) = ack else { return };
                    let cid = ack
                        .get("client_id")
                        .and_then(|x| x.as_str())
                        .unwrap_or_default()
                        .to_string();
                    let Some(body) = pending.remove(&cid) else {
                        continue;
                    };
                    if ev_type(&ack) != "ack" {
                        if ack.get("code").and_then(|c| c.as_str()) == Some("rate_limited") {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        panic!("send frame refused: {ack}");
                    }
                    let m = ev_message(&ack);
                    assert_eq!(m.body, body, "ack carries the body sent");
                    let _ = acks.send((m.id, body));
                }
                // Drop the fan-out of our own messages so the backlog stays small.
                while ws.try_wait_for(Duration::ZERO, |_| true).await.is_some() {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_send_burst_loses_no_acknowledged_message() {
    const CYCLES: usize = 30;
    const USERS: [&str; 4] = ["s0", "s1", "s2", "s3"];
    let seed = std::env::var("CONFAB_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("kill9 durability: CONFAB_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();

    let mut node =
        TestNode::start_with(NodeOptions { name: "kill9".into(), ..NodeOptions::default() }).await;
    let mut clients = Vec::new();
    for u in USERS {
        let c = Client::for_node(&node);
        c.register(u, PASSWORD).await.must("register");
        clients.push(c);
    }
    let others: Vec<&Client> = clients[1..].iter().collect();
    let chat = public_channel(&clients[0], "burst", &others).await;

    let mut acked: HashMap<String, String> = HashMap::new();
    let mut per_cycle = Vec::new();
    let mut relogins = 0;
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let s = if i % 2 == 0 { Sender::Http(c.clone()) } else { Sender::Ws(c.clone()) };
            tasks.push(tokio::spawn(run_sender(
                s,
                chat.id.clone(),
                format!("c{cycle}-u{i}"),
                stop.clone(),
                tx.clone(),
            )));
        }
        drop(tx);
        // Wait for the burst to be under way, then kill at a random moment.
        let mut cycle_acks = Vec::new();
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(a)) => cycle_acks.push(a),
            _ => panic!("cycle {cycle}: no message acknowledged within 20 s"),
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(10..400))).await;
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            if let Err(e) = t.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        while let Some(a) = rx.recv().await {
            cycle_acks.push(a);
        }
        per_cycle.push(cycle_acks.len());
        for (id, body) in cycle_acks {
            if let Some(prev) = acked.insert(id.clone(), body.clone()) {
                panic!("cycle {cycle}: message id {id} acknowledged twice ({prev:?}, {body:?})");
            }
        }

        node.start_again().await;
        for (c, u) in clients.iter_mut().zip(USERS) {
            if !reconnect(c, &node, u).await {
                relogins += 1;
            }
        }
        let all = clients[0].all_messages(&chat.id).await.must("history after kill -9");
        let mut stored: HashMap<&str, &str> = HashMap::new();
        for m in &all {
            if stored.insert(m.id.as_str(), m.body.as_str()).is_some() {
                panic!("cycle {cycle}: message {} appears twice in history", m.id);
            }
        }
        let mut lost = Vec::new();
        for (id, body) in &acked {
            match stored.get(id.as_str()) {
                Some(b) if b == body => {}
                Some(b) => {
                    panic!("cycle {cycle}: message {id} has body {b:?}, acknowledged {body:?}")
                }
                None => lost.push(format!("{id} {body:?}")),
            }
        }
        assert!(
            lost.is_empty(),
            "cycle {cycle} (seed {seed}): {} acknowledged message(s) lost after kill -9: {:?}",
            lost.len(),
            lost.iter().take(20).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "kill9 durability: {CYCLES} cycles, {} acknowledged messages all present (per cycle {per_cycle:?}), \
         {relogins} re-logins needed after kill -9, {:?}",
        acked.len(),
        started.elapsed()
    );
}
