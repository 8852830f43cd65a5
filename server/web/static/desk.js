// The desk without page loads: each Enter in the scan field (a keyboard-wedge scanner
// types the code and Enter fast) and each renew/return button is posted as the plain
// form would be, with X-Desk-Fragment: 1; the returned panel replaces the old one.
// Posts go one at a time, in order, so a card scanned before a book opens the reader
// first; the field is cleared at once so the next scan can be typed meanwhile.
(function () {
  "use strict";
  var scan = document.getElementById("desk-scan");
  var live = document.getElementById("desk-live");
  if (!scan || !live || !window.fetch || !window.FormData) { return; }
  var field = document.getElementById("desk-code");
  var readerField = document.getElementById("desk-reader-code");
  var queue = [];
  var busy = false;

  function nonce() {
    // crypto.randomUUID needs a secure context; a library LAN is often plain http.
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function show(html) {
    live.innerHTML = html;
    var panel = document.getElementById("desk-panel");
    if (panel && readerField) { readerField.value = panel.getAttribute("data-reader") || ""; }
  }

  function next() {
    if (busy || !queue.length) { return; }
    busy = true;
    document.body.classList.add("busy");
    var job = queue.shift();
    var data = job.data;
    // The reader opened by an earlier scan in the queue is known only now.
    if (job.form === scan && readerField) { data.set("reader", readerField.value); }
    data.set("nonce", nonce());
    fetch(job.form.action, {method: "POST", body: data, credentials: "same-origin",
                            headers: {"X-Desk-Fragment": "1"}})
      .then(function (response) {
        if (response.redirected || (response.headers.get("content-type") || "").indexOf("text/html") < 0) {
          window.location.reload();  // signed out, or the form expired: start again
          return null;
        }
        return response.text().then(function (text) {
          if (text.indexOf('id="desk-panel"') < 0) { window.location.reload(); return; }
          show(text);
        });
      })
      .catch(function () {
        var note = document.createElement("p");
        note.id = "desk-result";
        note.className = "notice desk-result error";
        note.setAttribute("role", "status");
        note.textContent = live.getAttribute("data-offline");
        var old = document.getElementById("desk-result");
        if (old) { old.replaceWith(note); } else { live.prepend(note); }
      })
      .then(function () {
        busy = false;
        document.body.classList.remove("busy");
        next();
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute || !form.hasAttribute("data-desk")) { return; }
    event.preventDefault();
    var data = new FormData(form);
    if (form === scan) {
      if (!field.value.trim()) { return; }
      field.value = "";
    }
    queue.push({form: form, data: data});
    next();
    if (field) { field.focus(); }
  });
})();
