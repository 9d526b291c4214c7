//! An XSS corpus in every place user text reaches the page: message bodies, display names,
//! channel names, topics and file names. Every payload would set `window.__xss` or open an
//! alert if it ran; none may run, none may cause a CSP violation (which would mean the client
//! tried to create markup from it), and each must render as its literal text.

use serde_json::{json, Value};

use super::*;

/// Message bodies (each sets `window.__xss` or alerts if interpreted as HTML/JS).
const BODIES: &[&str] = &[
    "<script>window.__xss=1</script>",
    "<img src=x onerror=\"window.__xss=2\">",
    "<svg onload=window.__xss=3>",
    "<iframe src=\"javascript:window.parent.__xss=4\"></iframe>",
    "\"><img src=x onerror=alert(5)>",
    "'><svg/onload=alert(6)>",
    "javascript:alert(7)",
    "[click me](javascript:window.__xss=8)",
    "<a href=\"javascript:window.__xss=9\">x</a>",
    "<body onload=window.__xss=10>",
    "<details open ontoggle=window.__xss=11>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=12>",
    "<object data=\"javascript:window.__xss=13\">",
    "<embed src=\"javascript:window.__xss=14\">",
    "<input autofocus onfocus=window.__xss=15>",
    "<video><source onerror=\"window.__xss=16\">",
    "<style>@import 'javascript:window.__xss=17';</style>",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:window.__xss=18\">",
    "<base href=\"javascript:window.__xss=19//\">",
    "{{constructor.constructor('window.__xss=20')()}}",
    "${window.__xss=21}",
    "`<img src=x onerror=window.__xss=22>`",
    "```\n<script>window.__xss=23</script>\n```",
    "*<img src=x onerror=window.__xss=24>*",
    "https://example.com/\"><img src=x onerror=window.__xss=25>",
    "http://x.example/?a=<script>window.__xss=26</script>",
    "@<img src=x onerror=window.__xss=27>",
    "&lt;img src=x onerror=window.__xss=28&gt;",
    "<img src=\"x\n\" onerror=\"window.__xss=29\">",
    "<scr<script>ipt>window.__xss=30</scr</script>ipt>",
    "%3Cscript%3Ewindow.__xss=31%3C/script%3E",
    "<form action=\"javascript:window.__xss=32\"><button>go</button></form>",
    "<div style=\"background:url(javascript:window.__xss=33)\">",
    "<svg><animate onbegin=window.__xss=34 attributeName=x dur=1s>",
    "<noscript><p title=\"</noscript><img src=x onerror=window.__xss=35>\">",
    "<template><script>window.__xss=36</script></template>",
    "> <img src=x onerror=window.__xss=37>",
    "- <img src=x onerror=window.__xss=38>\n- <b onclick=window.__xss=39>item</b>",
    "mailto:x@example.com?body=<script>window.__xss=40</script>",
    "~<img src=x onerror=window.__xss=41>~",
];

/// Display names (at most 100 characters).
const NAMES: &[&str] = &[
    "<img src=x onerror=window.__xss=101>",
    "<svg onload=window.__xss=102>",
    "\"><script>window.__xss=103</script>",
    "'><b onmouseover=window.__xss=104>Eve</b>",
    "<input autofocus onfocus=alert(105)>",
    "javascript:window.__xss=106",
];

/// Channel names (at most 80 characters, unique ignoring case).
const CHANNELS: &[&str] = &[
    "<img src=x onerror=window.__xss=201>",
    "<svg onload=window.__xss=202>",
    "\"><script>window.__xss=203</script>",
    "javascript:window.__xss=204",
    "<iframe srcdoc=\"<script>parent.__xss=205</script>\">",
    "{{7*7}}<style>*{display:none}</style>",
    "<a href=javascript:window.__xss=207>ch</a>",
    "'-alert(208)-'",
];

/// Topics (at most 250 characters), one per channel.
const TOPICS: &[&str] = &[
    "<img src=x onerror=window.__xss=301> the topic",
    "<script>alert(302)</script>",
    "https://example.com/\"onmouseover=\"window.__xss=303",
    "<details open ontoggle=window.__xss=304>",
    "*<svg onload=window.__xss=305>*",
    "<marquee onstart=window.__xss=306>",
    "`<img src=x onerror=window.__xss=307>`",
    "<body onpageshow=window.__xss=308>",
];

/// File names (the node keeps the last path component, so no `/`).
const FILES: &[&str] = &[
    "<img src=x onerror=window.__xss=401>.txt",
    "\"><svg onload=window.__xss=402>.png",
    "javascript:window.__xss=403.txt",
    "<iframe srcdoc='<b>x'>.pdf",
    "'onmouseover='window.__xss=405'.txt",
];

/// Only letters and digits: formatting markers, whitespace and list/quote syntax drop out,
/// every character of the payload's words must still be there as text.
fn alnum(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Elements and attributes that must never appear anywhere in the page.
const INJECTED: &str = "document.querySelectorAll('script:not([src]), iframe, object, embed, frame, \
    [onerror], [onload], [onclick], [onmouseover], [onfocus], [ontoggle], [onbegin], [onstart], \
    [onpageshow], [srcdoc], a[href^=\"javascript\" i], form[action^=\"javascript\" i], base, meta[http-equiv], \
    body style, #app style, img[src]:not([src^=\"/api/v1/media/\"]):not([src^=\"data:\"])').length";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_xss_corpus_executes_nothing_and_renders_literally() {
    let total = BODIES.len() + NAMES.len() + CHANNELS.len() + TOPICS.len() + FILES.len();
    assert!(total >= 30, "at least 30 payloads ({total})");
    let mut users = vec!["alice", "bob"];
    let extra: Vec<String> = (0..NAMES.len()).map(|i| format!("x{i}")).collect();
    users.extend(extra.iter().map(String::as_str));
    let scene = Scene::new(&users).await;
    let alice_api = &scene.clients[0];
    let bob_api = &scene.clients[1];
    let general = public_channel(alice_api, "general", &[bob_api]).await;

    for body in BODIES {
        bob_api.send(&general.id, body).await.must("payload message");
    }
    // File names: uploaded by bob, posted in #general.
    let mut atts = Vec::new();
    for name in FILES {
        let a = upload_media(bob_api, name, format!("payload file {name}").into_bytes()).await;
        atts.push(json!({"id": a["id"], "name": name}));
    }
    let posted: Value = bob_api
        .call(
            reqwest::Method::POST,
            &format!("/chats/{}/messages", general.id),
            Some(json!({"body": "files", "attachments": atts})),
        )
        .await
        .must("message with payload file names");
    let stored_names: Vec<String> = posted["attachments"]
        .as_array()
        .map(|a| a.iter().map(|x| x["name"].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    assert_eq!(stored_names.len(), FILES.len(), "{posted}");

    // Display names: each payload user joins #general, posts, and opens a DM with alice.
    for (i, name) in NAMES.iter().enumerate() {
        let c = &scene.clients[2 + i];
        c.patch_me(json!({"display_name": name})).await.must("payload display name");
        c.join(&general.id).await.must("join");
        c.send(&general.id, &format!("hello from user {i}")).await.must("send");
        let (_, dm) = c.dm(&["alice@local"]).await.must("dm");
        c.send(&dm.id, "hi alice").await.must("dm send");
    }
    // Channel names and topics.
    let mut channels = Vec::new();
    for (name, topic) in CHANNELS.iter().zip(TOPICS) {
        let (_, ch) = bob_api
            .create_channel_with(json!({"name": name, "topic": topic, "visibility": "public"}))
            .await
            .must("payload channel");
        alice_api.join(&ch.id).await.must("join payload channel");
        channels.push(ch);
    }

    let a = scene.browser("alice").await;
    a.assert_clean("after sign-in (sidebar with payload names)").await;
    // Sidebar: every channel and DM name is shown literally.
    let names = a
        .eval("Array.from(document.querySelectorAll('.chat-item .chat-item-name')).map(e => e.textContent)")
        .await;
    let names: Vec<String> = serde_json::from_value(names).unwrap_or_default();
    for ch in CHANNELS {
        assert!(names.iter().any(|n| n == ch), "channel {ch:?} in the sidebar: {names:?}");
    }
    for n in NAMES {
        assert!(names.iter().any(|x| x == n), "DM with {n:?} in the sidebar: {names:?}");
    }

    // #general: every body, author name and file name, literally.
    a.open_chat(&general.id).await;
    a.wait(
        "all payload messages",
        &format!(
            "document.querySelectorAll('#msg-list .msg[data-id]').length >= {}",
            BODIES.len() + 1 + NAMES.len()
        ),
    )
    .await;
    let texts = a
        .eval("Array.from(document.querySelectorAll('#msg-list .msg[data-id] .msg-body')).map(e => e.textContent)")
        .await;
    let texts: Vec<String> = serde_json::from_value(texts).unwrap_or_default();
    for body in BODIES {
        let want = alnum(body);
        assert!(
            texts.iter().any(|t| alnum(t) == want),
            "message {body:?} rendered literally; bodies shown: {texts:#?}"
        );
    }
    let authors = a
        .eval("Array.from(document.querySelectorAll('#msg-list .msg-author')).map(e => e.textContent)")
        .await;
    let authors: Vec<String> = serde_json::from_value(authors).unwrap_or_default();
    for n in NAMES {
        assert!(authors.iter().any(|x| x == n), "author {n:?} shown literally: {authors:?}");
    }
    let files = a
        .eval(
            "Array.from(document.querySelectorAll('#msg-list .att-name')).map(e => e.textContent)",
        )
        .await;
    let files: Vec<String> = serde_json::from_value(files).unwrap_or_default();
    for f in &stored_names {
        assert!(files.iter().any(|x| x == f), "file name {f:?} shown literally: {files:?}");
    }
    assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in #general");
    a.screenshot("20-xss-general").await;
    a.assert_clean("#general with payload messages, authors and files").await;

    // Each payload channel: header name and topic literally.
    for (ch, (name, topic)) in channels.iter().zip(CHANNELS.iter().zip(TOPICS)) {
        a.open_chat(&ch.id).await;
        let v = a
            .eval("({name: document.getElementById('chat-name').textContent, topic: document.getElementById('chat-topic').textContent})")
            .await;
        assert!(
            v["name"].as_str().unwrap_or_default().ends_with(name),
            "channel header {name:?}: {v}"
        );
        assert_eq!(v["topic"].as_str().unwrap_or_default(), *topic, "topic: {v}");
        assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in {name:?}");
        a.assert_clean(&format!("channel {name:?}")).await;
    }
    // The DMs with payload names.
    let dms = alice_api.chats().await.must("chats");
    for e in dms.iter().filter(|e| e.chat.kind == "dm") {
        a.open_chat(&e.chat.id).await;
        a.wait_message("hi alice").await;
        assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in a DM");
        a.assert_clean("a DM with a payload name").await;
    }

    // The channel browser and the quick switcher list the payload names.
    a.click("#btn-browse").await;
    a.wait(
        "the browser lists the payload channels",
        &format!("document.querySelectorAll('#browse-list .pick').length >= {}", CHANNELS.len()),
    )
    .await;
    assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in the browser");
    a.type_into("#browse-filter", "\u{e00c}").await;
    a.wait("browser closed", "!document.getElementById('dlg-browse').open").await;
    a.type_into("#input", "\u{e009}k\u{e000}").await;
    a.wait("the quick switcher", "document.getElementById('dlg-switch').open").await;
    a.type_into("#switch-input", "<").await;
    a.wait(
        "switcher results",
        "document.querySelectorAll('#switch-list .switch-item').length >= 3",
    )
    .await;
    assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in the switcher");
    a.type_into("#switch-input", "\u{e00c}").await;

    // Search results (snippets are built from the payload text).
    a.click("#search-input").await;
    a.type_into("#search-input", "xss\u{e007}").await;
    a.wait(
        "search hits for the payloads",
        "document.querySelectorAll('#search-results .search-hit').length >= 5",
    )
    .await;
    assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements in search results");
    a.screenshot("21-xss-search").await;

    // Edit a message into a payload live, and let a payload user rename live.
    bob_api
        .send(&general.id, "<img src=x onerror=window.__xss=500> live")
        .await
        .must("live payload");
    scene.clients[2]
        .patch_me(json!({"display_name": "<svg onload=window.__xss=501>"}))
        .await
        .must("live rename");
    a.click("#btn-search-close").await;
    a.open_chat(&general.id).await;
    a.wait_message("live").await;
    a.wait(
        "the live rename",
        "Array.from(document.querySelectorAll('#msg-list .msg-author')).some(e => e.textContent === '<svg onload=window.__xss=501>')",
    )
    .await;
    assert_eq!(a.eval(INJECTED).await, json!(0), "no injected elements after live events");
    a.assert_clean("the whole corpus").await;
    a.close().await;
}
