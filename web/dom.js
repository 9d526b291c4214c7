// Small DOM helpers (no innerHTML anywhere): element builder, reconciling children, toasts,
// the confirmation dialog and generic dialog wiring.

export const $ = (id) => document.getElementById(id);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return el;
}

/** Make `container`'s children exactly `els`, moving as few nodes as possible. */
export function reconcile(container, els) {
  let cur = container.firstChild;
  for (const el of els) {
    if (el === cur) {
      cur = cur.nextSibling;
      continue;
    }
    container.insertBefore(el, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    container.removeChild(cur);
    cur = next;
  }
}

export function show(el, on) {
  el.hidden = !on;
}

let toastTimer = null;
export function toast(text, kind = "info") {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast " + kind;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, 5000);
}

/** A modal yes/no question. Resolves true for OK. */
export function confirmDialog(title, text, okLabel = "Delete") {
  const d = $("dlg-confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    const done = (v) => {
      $("confirm-ok").removeEventListener("click", ok);
      $("confirm-cancel").removeEventListener("click", cancel);
      d.removeEventListener("close", cancel);
      if (d.open) d.close();
      resolve(v);
    };
    const ok = () => done(true);
    const cancel = () => done(false);
    $("confirm-ok").addEventListener("click", ok);
    $("confirm-cancel").addEventListener("click", cancel);
    d.addEventListener("close", cancel);
    d.showModal();
    $("confirm-cancel").focus();
  });
}

export function openDialog(id) {
  const d = $(id);
  if (!d.open) d.showModal();
  return d;
}

export function wireDialogClose() {
  for (const b of document.querySelectorAll("dialog [data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  // Escape in a search field first clears it in Chromium and keeps the dialog open: close it.
  for (const d of document.querySelectorAll("dialog")) {
    d.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && e.target instanceof HTMLInputElement && e.target.type === "search") {
        e.preventDefault();
        d.close();
      }
    });
  }
  // A click on the backdrop closes light dialogs.
  for (const id of ["emoji-picker", "lightbox", "dlg-switch", "dlg-browse"]) {
    $(id).addEventListener("click", (e) => {
      if (e.target !== $(id)) return;
      const r = $(id).getBoundingClientRect();
      const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
      if (!inside) $(id).close();
    });
  }
}
