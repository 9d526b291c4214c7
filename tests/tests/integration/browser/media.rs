//! Uploads, thumbnails, search, the showcase screenshots and dark mode.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// A pleasant gradient picture (a "sunset") as PNG.
fn sunset_png(w: u32, h: u32) -> Vec<u8> {
    png_rgb(w, h, |x, y| {
        let fy = y as f32 / h as f32;
        let fx = x as f32 / w as f32;
        let sun = ((fx - 0.5).powi(2) + (fy - 0.62).powi(2)).sqrt() < 0.12;
        if sun {
            [255, 214, 120]
        } else if fy > 0.7 {
            [(40.0 + 30.0 * fx) as u8, (60.0 + 40.0 * fy) as u8, 110]
        } else {
            [(250.0 - 60.0 * fy) as u8, (120.0 + 60.0 * fy) as u8, (90.0 + 120.0 * fy) as u8]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_upload_image_shows_thumbnail_and_opens_full_size() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let chat = public_channel(&scene.clients[0], "general", &[&scene.clients[1]]).await;
    let a = scene.browser("alice").await;
    let b = scene.browser("bob").await;
    a.open_chat(&chat.id).await;
    b.open_chat(&chat.id).await;

    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let img = dir.path().join("sunset.png");
    std::fs::write(&img, sunset_png(1200, 700)).expect("write png");
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "release notes\n".repeat(100)).expect("write txt");

    // The file picker: choose both files at once.
    let input = a.wd.find(fantoccini::Locator::Css("#file-input")).await;
    let input = match input {
        Ok(i) => i,
        Err(e) => a.fail(&format!("no #file-input: {e}")).await,
    };
    if let Err(e) = input.send_keys(&format!("{}\n{}", img.display(), txt.display())).await {
        a.fail(&format!("choosing files: {e}")).await;
    }
    a.wait(
        "both uploads done, the image with a preview",
        "(() => { const u = document.querySelectorAll('#upload-tray .upload'); \
          if (u.length !== 2) return false; \
          for (const x of u) if (x.dataset.state !== 'done') return false; \
          const im = document.querySelector('#upload-tray .upload img'); \
          return !!im && im.complete && im.naturalWidth > 0; })()",
    )
    .await;
    a.type_into("#input", "the view from the office\u{e007}").await;
    let id = a.wait_message("the view from the office").await;
    for br in [&a, &b] {
        br.wait_args(
            "the image thumbnail and the file card",
            "(() => { const m = document.querySelector('.msg[data-id=\"' + arguments[0] + '\"]'); if (!m) return false; \
              const im = m.querySelector('.att-image img'); const f = m.querySelector('.att-file'); \
              return !!im && im.complete && im.naturalWidth > 0 && im.getAttribute('src').startsWith('/api/v1/media/') && \
                     !!f && f.textContent.includes('notes.txt'); })()",
            vec![json!(id)],
        )
        .await;
    }
    let raw = scene.clients[1]
        .raw(reqwest::Method::GET, &format!("/chats/{}/messages/{id}", chat.id), Body::None)
        .await
        .json()
        .unwrap_or_default();
    let atts = raw["attachments"].as_array().cloned().unwrap_or_default();
    assert_eq!(atts.len(), 2, "two attachments on the node: {raw}");
    let image =
        atts.iter().find(|a| a["name"] == json!("sunset.png")).cloned().unwrap_or(Value::Null);
    assert_eq!(image["mime"], json!("image/png"), "{raw}");

    // Click the thumbnail: the full-size image opens; Escape closes it.
    b.click(&format!(".msg[data-id=\"{id}\"] .att-image img")).await;
    b.wait_args(
        "the full-size image",
        "(() => { const d = document.getElementById('lightbox'); const im = document.getElementById('lightbox-img'); \
          return d.open && im.complete && im.naturalWidth === 1200 && im.getAttribute('src') === '/api/v1/media/' + arguments[0]; })()",
        vec![image["id"].clone()],
    )
    .await;
    b.screenshot("06-image-full-size").await;
    b.type_into("#btn-lightbox-close", "\u{e00c}").await;
    b.wait("the lightbox closed", "!document.getElementById('lightbox').open").await;

    // Paste and drag-and-drop (synthetic events carrying real File objects).
    for (how, ev) in [("paste", "paste"), ("drop", "drop")] {
        a.js_args(
            "const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0)); \
             const dt = new DataTransfer(); dt.items.add(new File([bytes], arguments[1], {type: 'image/png'})); \
             if (arguments[2] === 'paste') document.getElementById('input').dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true})); \
             else { const t = document.getElementById('chat'); \
               t.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true, cancelable: true})); \
               t.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); }",
            vec![
                json!(base64(&sunset_png(320, 200))),
                json!(format!("{how}.png")),
                json!(ev),
            ],
        )
        .await;
        a.wait_args(
            "the pasted/dropped file uploaded",
            "(() => { for (const u of document.querySelectorAll('#upload-tray .upload')) \
                if (u.textContent.includes(arguments[0]) && u.dataset.state === 'done') return true; return false; })()",
            vec![json!(format!("{how}.png"))],
        )
        .await;
    }
    a.type_into("#input", "\u{e007}").await; // attachments alone, no text
    a.wait(
        "a message with the two pasted/dropped images",
        "Array.from(document.querySelectorAll('#msg-list .msg[data-id]')).some(m => m.querySelectorAll('.att-image img').length === 2)",
    )
    .await;
    a.wait("the tray emptied", "document.querySelectorAll('#upload-tray .upload').length === 0")
        .await;
    a.assert_clean("uploads").await;
    b.assert_clean("uploads").await;
    a.close().await;
    b.close().await;
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_search_finds_highlights_and_jumps_to_the_message() {
    let scene = Scene::new(&["alice", "bob"]).await;
    let (alice_api, bob_api) = (&scene.clients[0], &scene.clients[1]);
    let general = public_channel(alice_api, "general", &[bob_api]).await;
    let design = public_channel(alice_api, "design", &[bob_api]).await;
    let target = bob_api
        .send(&general.id, "the quarterly zebrafish report is ready for review")
        .await
        .must("target")
        .id;
    for i in 0..130 {
        bob_api.send(&general.id, &format!("later chatter {i}")).await.must("filler");
    }
    alice_api.send(&design.id, "zebrafish colours for the new logo").await.must("design msg");
    // A late reply in the target's thread, far outside the window a jump loads.
    alice_api
        .send_full(&general.id, "late thread answer", Some(&target), None)
        .await
        .must("late reply");
    // The index may lag behind the write: wait until the node finds both.
    let mut ok = false;
    for _ in 0..100 {
        let r = alice_api.raw(reqwest::Method::GET, "/search?q=zebrafish", Body::None).await;
        if r.status == 200 && r.json().is_some_and(|v| v["total"] == json!(2)) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ok, "the node's search finds both zebrafish messages");

    let a = scene.browser("alice").await;
    a.click("#search-input").await;
    a.type_into("#search-input", "zebrafish\u{e007}").await;
    a.wait(
        "two hits with the term highlighted",
        "(() => { const h = document.querySelectorAll('#search-results .search-hit'); \
          return h.length === 2 && Array.from(h).every(x => x.querySelector('mark') && x.querySelector('mark').textContent.toLowerCase() === 'zebrafish'); })()",
    )
    .await;
    a.screenshot("07-search-results").await;
    // Filter by author: only Bob's.
    a.js_args(
        "const s = document.getElementById('sf-author'); s.value = 'bob@local'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    a.wait(
        "one hit by bob",
        "document.querySelectorAll('#search-results .search-hit').length === 1 && \
         document.querySelector('#search-results .search-hit').textContent.includes('quarterly')",
    )
    .await;
    // Jump: the message is shown in context (outside the newest page), highlighted, in view.
    a.click("#search-results .search-hit").await;
    a.wait_args(
        "the old message in context, highlighted and visible",
        "(() => { const m = document.querySelector('#msg-list .msg[data-id=\"' + arguments[0] + '\"]'); if (!m) return false; \
          const box = document.getElementById('messages').getBoundingClientRect(); const r = m.getBoundingClientRect(); \
          return m.classList.contains('flash') && r.top >= box.top - 2 && r.bottom <= box.bottom + 2 && \
                 document.getElementById('chat').dataset.chatId === arguments[1]; })()",
        vec![json!(target), json!(general.id)],
    )
    .await;
    // The thread of the old message finds its late reply beyond the loaded window.
    a.message_tool(&target, "thread").await;
    a.wait(
        "the late reply in the thread panel",
        "(() => { const p = document.getElementById('thread'); \
          return !p.hidden && p.textContent.includes('quarterly zebrafish') && p.textContent.includes('late thread answer'); })()",
    )
    .await;
    a.click("#btn-thread-close").await;
    // The newer messages follow when scrolling down.
    a.js_args(
        "const b = document.getElementById('messages'); b.scrollTop = b.scrollHeight;",
        vec![],
    )
    .await;
    a.wait(
        "newer messages loaded below",
        "(() => { const b = document.getElementById('messages'); b.scrollTop = b.scrollHeight; \
          return Array.from(document.querySelectorAll('#msg-list .msg-body')).some(x => x.textContent.includes('late thread answer')); })()",
    )
    .await;
    a.assert_clean("search").await;
    a.close().await;
}

/// A realistic team conversation for the screenshots (light and dark).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_showcase_screenshots_light_and_dark() {
    let scene = Scene::new(&["alice", "bob", "carol", "dan"]).await;
    let names = ["Alice Chen", "Bob Martin", "Carol Diaz", "Dan Okafor"];
    let statuses = ["Launch week", "On call", "", "Travelling"];
    for ((c, n), s) in scene.clients.iter().zip(names).zip(statuses) {
        c.patch_me(json!({"display_name": n, "status_text": s})).await.must("profile");
    }
    let [alice, bob, carol, dan] =
        [&scene.clients[0], &scene.clients[1], &scene.clients[2], &scene.clients[3]];
    let general = public_channel(alice, "general", &[bob, carol, dan]).await;
    alice
        .patch_chat(&general.id, json!({"topic": "Company-wide announcements and chatter"}))
        .await
        .must("topic");
    let design = public_channel(carol, "design", &[alice, bob]).await;
    let _random = public_channel(dan, "random", &[alice, bob, carol]).await;
    let eng = public_channel(bob, "engineering", &[alice, dan]).await;
    carol.send(&design.id, "New icon set is up for review").await.must("send");
    dan.send(&eng.id, "CI is green again 🎉").await.must("send");
    let (_, dm) = bob.dm(&["alice@local"]).await.must("dm");
    bob.send(&dm.id, "Can you look at the release checklist when you have a minute?")
        .await
        .must("dm");

    let m1 = alice
        .send(&general.id, "Good morning team! The *launch* is on track for Friday.")
        .await
        .must("send");
    bob.send(&general.id, "Great news. I merged the last migration: `confab-node rebuild-views` runs in 3 s on the staging data.").await.must("send");
    bob.send(&general.id, "```\n$ confab-node serve --listen 0.0.0.0:8443\nlistening on https://chat.example.com\n```").await.must("send");
    let m3 = carol
        .send(&general.id, "Here is the final hero image for the landing page:")
        .await
        .must("send");
    let att = upload_media(carol, "landing-hero.png", sunset_png(1200, 700)).await;
    let (_, with_img) = carol
        .call_status::<Value>(
            reqwest::Method::POST,
            &format!("/chats/{}/messages", general.id),
            Some(
                json!({"body": "", "attachments": [{"id": att["id"], "name": "landing-hero.png"}]}),
            ),
        )
        .await
        .must("image message");
    let _ = with_img;
    dan.send(&general.id, "Looks fantastic @carol 😍 — can we get a dark variant too?")
        .await
        .must("send");
    alice
        .send(&general.id, "@channel release notes draft: https://docs.example.com/launch")
        .await
        .must("send");
    for (c, e, id) in [
        (bob, "🎉", &m1.id),
        (carol, "🎉", &m1.id),
        (dan, "👍", &m1.id),
        (alice, "😍", &m3.id),
        (bob, "😍", &m3.id),
    ] {
        c.raw(
            reqwest::Method::POST,
            &format!("/chats/{}/messages/{id}/reactions", general.id),
            Body::Json(json!({"emoji": e})),
        )
        .await;
    }

    let a = scene.browser("alice").await;
    a.open_chat(&general.id).await;
    a.wait(
        "the image loaded",
        "Array.from(document.querySelectorAll('#msg-list .att-image img')).some(i => i.complete && i.naturalWidth > 0)",
    )
    .await;
    a.wait("reactions shown", "document.querySelectorAll('#msg-list .reaction').length >= 3").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.screenshot("10-chat-light").await;
    // A phone-sized window: the chat alone, with a way back to the list.
    if let Err(e) = a.wd.set_window_size(400, 860).await {
        a.fail(&format!("resize: {e}")).await;
    }
    a.wait(
        "the narrow layout",
        "getComputedStyle(document.querySelector('.sidebar')).display === 'none' && !!document.getElementById('btn-back').offsetParent",
    )
    .await;
    a.screenshot("13-phone-chat").await;
    a.click("#btn-back").await;
    a.wait(
        "the chat list on the phone",
        "getComputedStyle(document.querySelector('.sidebar')).display !== 'none'",
    )
    .await;
    a.screenshot("14-phone-list").await;
    a.assert_clean("showcase light").await;
    a.close().await;

    let d = Browser::open(&scene.driver, "alice-dark", BrowserOpts { dark: true }).await;
    d.goto(&format!("{}/", scene.node.base_url())).await;
    d.wait("the sign-in form", "!document.getElementById('auth').hidden").await;
    let dark = d.eval("matchMedia('(prefers-color-scheme: dark)').matches").await;
    assert_eq!(dark, json!(true), "the dark browser prefers dark");
    d.screenshot("11-sign-in-dark").await;
    d.sign_in(&scene.node.base_url(), "alice", PASSWORD).await;
    d.open_chat(&general.id).await;
    d.wait(
        "the image loaded",
        "Array.from(document.querySelectorAll('#msg-list .att-image img')).some(i => i.complete && i.naturalWidth > 0)",
    )
    .await;
    let lum = d
        .eval(
            "(() => { const m = getComputedStyle(document.getElementById('messages')).backgroundColor.match(/\\d+(\\.\\d+)?/g).map(Number); \
              return 0.2126 * m[0] + 0.7152 * m[1] + 0.0722 * m[2]; })()",
        )
        .await
        .as_f64()
        .unwrap_or(255.0);
    assert!(lum < 60.0, "dark mode: the message area is dark (luminance {lum})");
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.screenshot("12-chat-dark").await;
    d.assert_clean("showcase dark").await;
    d.close().await;
}
