// Confab browser client: diagnostics, loaded first as a classic script (before any module).
// Collects Content-Security-Policy violations and uncaught script errors into window arrays
// (the browser tests assert they stay empty) and logs them to the console.
"use strict";
(function () {
  window.__confabCsp = [];
  window.__confabErrors = [];
  window.__confabWatch = true;
  document.addEventListener("securitypolicyviolation", function (e) {
    var v = { directive: e.violatedDirective, blocked: String(e.blockedURI || ""), source: String(e.sourceFile || ""), line: e.lineNumber, sample: String(e.sample || "") };
    window.__confabCsp.push(v);
    console.error("CSP violation", v);
  });
  window.addEventListener("error", function (e) {
    // Resource load errors (e.g. an image that 404s) are not script errors.
    if (!(e instanceof ErrorEvent)) return;
    window.__confabErrors.push(String(e.message) + " @ " + e.filename + ":" + e.lineno);
  });
  window.addEventListener("unhandledrejection", function (e) {
    var r = e.reason;
    window.__confabErrors.push("unhandled rejection: " + (r && r.stack ? r.stack : String(r)));
  });
})();
