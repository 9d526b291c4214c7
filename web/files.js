// Files: attachments in messages, the lightbox, uploads (picker, drag-and-drop, paste).

import { uploadFile } from "./api.js";
import { $, h, show, toast } from "./dom.js";
import { errorText } from "./errors.js";
import { fileIcon, fitSize, formatBytes, isImageAttachment, pickThumbnail } from "./logic.js";
import { MAX_ATTACHMENTS, S } from "./state.js";

export function attachmentsEl(m) {
  const list = m.attachments || [];
  if (!list.length) return null;
  return h(
    "div",
    { class: "attachments" },
    list.map((a) => {
      if (isImageAttachment(a)) {
        const t = pickThumbnail(a, 400) || a.thumbnails[0];
        const size = fitSize(t.width, t.height, 360, 260);
        return h(
          "figure",
          { class: "att-image" },
          h(
            "button",
            { type: "button", class: "att-open", "aria-label": "Open image " + a.name, onclick: () => openLightbox(a) },
            h("img", { src: "/api/v1/media/" + encodeURIComponent(t.id), alt: a.name, width: size.width, height: size.height, loading: "lazy", decoding: "async" }),
          ),
          h("figcaption", { class: "att-caption muted small" }, h("span", { class: "att-name", text: a.name }), " · " + formatBytes(a.size_bytes)),
        );
      }
      return h(
        "a",
        { class: "att-file", href: "/api/v1/media/" + encodeURIComponent(a.id), download: a.name, title: "Download " + a.name },
        h("span", { class: "att-icon", "aria-hidden": "true", text: fileIcon(a.mime) }),
        h("span", { class: "att-meta" }, h("span", { class: "att-name", text: a.name }), h("span", { class: "att-size muted small", text: (a.mime || "file") + " · " + formatBytes(a.size_bytes) })),
      );
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Uploads

let uploadSeq = 0;

export function addFiles(fileList) {
  if (!S.openId || !S.openChat || S.openChat.joined === false) return;
  const files = Array.from(fileList || []);
  const room = MAX_ATTACHMENTS - S.uploads.filter((u) => u.chat_id === S.openId).length;
  if (files.length > room) toast("At most " + MAX_ATTACHMENTS + " files per message.", "error");
  for (const f of files.slice(0, Math.max(0, room))) startUpload(f);
  renderUploads();
}

function startUpload(file) {
  const u = { key: "u" + ++uploadSeq, chat_id: S.openId, name: file.name || "pasted-file", size: file.size, sent: 0, state: "uploading", error: null, attachment: null, abort: null };
  let f = file;
  if (!file.name) f = new File([file], u.name, { type: file.type });
  const { promise, abort } = uploadFile(f, (sent) => {
    u.sent = sent;
    updateUploadProgress(u);
  });
  u.abort = abort;
  S.uploads.push(u);
  promise
    .then((a) => {
      u.state = "done";
      u.attachment = a;
      renderUploads();
    })
    .catch((e) => {
      if (!S.uploads.includes(u)) return;
      u.state = "failed";
      u.error = errorText(e);
      renderUploads();
    });
}

function updateUploadProgress(u) {
  const el = document.querySelector('#upload-tray .upload[data-key="' + u.key + '"] progress');
  if (el) el.value = u.size ? u.sent / u.size : 0;
}

function removeUpload(u) {
  if (u.state === "uploading" && u.abort) u.abort();
  S.uploads = S.uploads.filter((x) => x !== u);
  renderUploads();
}

export function renderUploads() {
  const list = S.uploads.filter((u) => u.chat_id === S.openId);
  $("upload-tray").replaceChildren(
    ...list.map((u) => {
      const a = u.attachment;
      let thumb;
      if (a && isImageAttachment(a)) {
        const t = a.thumbnails[a.thumbnails.length - 1];
        thumb = h("img", { class: "upload-thumb", src: "/api/v1/media/" + encodeURIComponent(t.id), alt: "", width: 48, height: 48 });
      } else {
        thumb = h("span", { class: "upload-thumb icon", "aria-hidden": "true", text: a ? fileIcon(a.mime) : "⏳" });
      }
      const status =
        u.state === "uploading"
          ? h("progress", { max: 1, value: u.size ? u.sent / u.size : 0, "aria-label": "Uploading " + u.name })
          : u.state === "failed"
            ? h("span", { class: "upload-error small", text: u.error || "failed" })
            : h("span", { class: "muted small", text: formatBytes(u.size) });
      return h(
        "li",
        { class: "upload", dataset: { key: u.key, state: u.state } },
        thumb,
        h("span", { class: "upload-meta" }, h("span", { class: "upload-name", text: u.name }), status),
        h("button", { type: "button", class: "ghost small upload-remove", "aria-label": "Remove " + u.name, onclick: () => removeUpload(u), text: "✕" }),
      );
    }),
  );
  show($("upload-tray"), list.length > 0);
}

let dragDepth = 0;

function hasFiles(e) {
  return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
}

export function wireDrop() {
  const target = $("chat");
  target.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth += 1;
    show($("drop-overlay"), true);
  });
  target.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  target.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) show($("drop-overlay"), false);
  });
  target.addEventListener("drop", (e) => {
    dragDepth = 0;
    show($("drop-overlay"), false);
    if (!e.dataTransfer || !e.dataTransfer.files || !e.dataTransfer.files.length) return;
    e.preventDefault();
    addFiles(e.dataTransfer.files);
  });
  $("input").addEventListener("paste", (e) => {
    const files = e.clipboardData && e.clipboardData.files;
    if (files && files.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
}

function openLightbox(a) {
  const img = $("lightbox-img");
  img.src = "/api/v1/media/" + encodeURIComponent(a.id);
  img.alt = a.name;
  $("lightbox-name").textContent = a.name + " · " + formatBytes(a.size_bytes) + (a.width ? " · " + a.width + "×" + a.height : "");
  const dl = $("lightbox-download");
  dl.href = "/api/v1/media/" + encodeURIComponent(a.id);
  dl.download = a.name;
  $("lightbox").showModal();
  $("btn-lightbox-close").focus();
}
