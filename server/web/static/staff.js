// Live updates for the staff pages from /staff/live (server-sent events). Without this
// script the pages still work: they are plain forms and links.
(function () {
  "use strict";
  var grid = document.getElementById("stations");
  var alerts = document.getElementById("alerts");
  var live = document.getElementById("live");
  var root = grid || alerts;
  if (!root || !window.EventSource) { return; }

  function setLive(on) {
    if (!live) { return; }
    live.className = "live " + (on ? "on" : "off");
    live.textContent = on ? live.dataset.on : live.dataset.off;
  }

  function fromHtml(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }

  function placeStation(card) {
    var old = document.getElementById(card.id);
    if (old) {
      // Keep what the librarian is typing into this card's message box.
      var typing = old.contains(document.activeElement) ? document.activeElement : null;
      if (typing && typing.id) {
        var twin = card.querySelector("#" + CSS.escape(typing.id));
        if (twin && "value" in twin) { twin.value = typing.value; }
      }
      old.replaceWith(card);
      if (typing && typing.id) {
        var again = document.getElementById(typing.id);
        if (again) { again.focus(); }
      }
      return;
    }
    var after = null;
    Array.prototype.forEach.call(grid.children, function (other) {
      if (!after && other.dataset.name > card.dataset.name) { after = other; }
    });
    grid.insertBefore(card, after);
    var none = document.getElementById("no-stations");
    if (none) { none.hidden = true; }
  }

  var refreshing = null;
  function refreshAlerts() {
    if (!alerts || refreshing) { return; }
    refreshing = fetch(alerts.dataset.list, {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) { alerts.innerHTML = html; }
      })
      .finally(function () { refreshing = null; });
  }

  var source = new EventSource(root.dataset.live);
  source.addEventListener("live", function (event) { setLive(event.data === "1"); });
  source.addEventListener("station", function (event) {
    if (!grid) { return; }
    var message = JSON.parse(event.data);
    var card = fromHtml(message.html);
    if (card) { placeStation(card); }
  });
  source.addEventListener("alerts", refreshAlerts);
  source.onerror = function () { setLive(false); };
  source.onopen = function () { refreshAlerts(); };
})();
