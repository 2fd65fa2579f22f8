// Getting around the chat page: reconnecting quickly after the server was away (and "Reconnect now"),
// Copy of a whole reply as its markdown, and a search hit opened in its conversation (highlighted and
// scrolled to). No framework; no inline handlers (CSP).
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }

  // ---- Reconnecting ------------------------------------------------------------------------------
  // htmx's ws extension waits up to a minute between attempts (its backoff doubles while the server is
  // down), and only after some close codes. This page schedules the attempts itself instead: at most
  // a second apart, so a page is back within about a second of the server accepting again, and a
  // "Reconnect now" button can start one at once without two sockets ever racing (a second socket
  // would show every delta twice). The extension's own timer is pushed out of reach.
  var NEVER = 2147483647;  // the longest delay setTimeout takes (~24 days)
  if (window.htmx) htmx.config.wsReconnectDelay = function () { return NEVER; };
  var RETRY_CAP_MS = 1000;
  var retry = { timer: null, count: 0, socket: null, connecting: false };

  function retryDelay(count) {
    var ceiling = Math.min(RETRY_CAP_MS, 150 * Math.pow(2, count));
    return ceiling * (0.75 + Math.random() * 0.25);  // a little jitter: pages do not come back in step
  }
  function reconnectButton() { return $("reconnect-now"); }
  function showReconnect(shown) {
    var button = reconnectButton();
    if (!button) return;
    button.hidden = !shown;
    button.disabled = false;
  }
  function reconnect() {
    if (retry.timer) { clearTimeout(retry.timer); retry.timer = null; }
    if (!retry.socket || retry.connecting) return;
    retry.count += 1;
    retry.socket.reconnect();
  }
  document.addEventListener("htmx:wsConnecting", function socketConnecting() { retry.connecting = true; });
  document.addEventListener("htmx:wsOpen", function socketOpen(event) {
    retry.connecting = false;
    retry.count = 0;
    retry.socket = event.detail.socketWrapper;
    showReconnect(false);
  });
  document.addEventListener("htmx:wsClose", function socketClosed(event) {
    retry.connecting = false;
    var code = event.detail && event.detail.event ? event.detail.event.code : 1006;
    retry.socket = event.detail.socketWrapper || retry.socket;
    // 4400-4499: the server's own answer (signed out, not found, too many pages); a socket whose
    // element left the page is gone for good.
    if ((code >= 4400 && code < 4500) || !document.body.contains(event.target)) return;
    showReconnect(true);
    if (retry.timer) clearTimeout(retry.timer);
    retry.timer = setTimeout(function () { retry.timer = null; reconnect(); }, retryDelay(retry.count));
  });
  document.addEventListener("click", function reconnectNow(event) {
    var button = event.target.closest && event.target.closest("#reconnect-now");
    if (!button) return;
    button.disabled = true;  // enabled again if this attempt fails too
    reconnect();
  });

  // ---- Copy a whole reply as its markdown ----------------------------------------------------------
  // The rendered text would lose fences, tables and emphasis (and pick up the code blocks' own Copy
  // labels): the source comes from the server (owner-only), for a reloaded page and a reply that
  // streamed in alike. A code block's own Copy (data-copy) still copies just its code (app.js).
  function copied(button, label) {
    var before = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", before);
    button.textContent = label;
    setTimeout(function () { button.textContent = before; }, 1500);
  }
  function copyByTextarea(text) {
    var area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    try { return document.execCommand("copy"); } finally { area.remove(); }
  }
  document.addEventListener("click", function copyReplySource(event) {
    var button = event.target.closest && event.target.closest("[data-copy-source]");
    if (!button) return;
    var source = fetch(button.getAttribute("data-copy-source"), { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("status " + response.status);
      return response.text();
    });
    var done = function () { copied(button, "Copied"); };
    var failed = function () { copied(button, "Could not copy"); };
    var clipboard = navigator.clipboard && window.isSecureContext ? navigator.clipboard : null;
    var writeText = function () {
      return source.then(function (text) {
        if (clipboard) return clipboard.writeText(text).then(done);
        if (copyByTextarea(text)) done(); else failed();
      }).catch(failed);
    };
    if (clipboard && window.ClipboardItem && clipboard.write) {
      // Handing the clipboard a promise keeps the click's permission while the text is fetched (Safari
      // asks for that); a browser that takes no promise there gets the text once it is in.
      var blob = source.then(function (text) { return new Blob([text], { type: "text/plain" }); });
      try {
        clipboard.write([new ClipboardItem({ "text/plain": blob })]).then(done, writeText);
      } catch (e) { writeText(); }
    } else {
      writeText();
    }
  });

  // ---- A search hit, opened -----------------------------------------------------------------------
  // The page names the message (?found=) and the words searched for (?q=): the message is outlined,
  // the words marked in it, and the first of them scrolled into view: once when the page opens and
  // again after the socket's first frame (its list replaces the one the page came with).
  var params = new URLSearchParams(window.location.search);
  var foundId = /^\d+$/.test(params.get("found") || "") ? "msg-" + params.get("found") : "";
  var words = (params.get("q") || "").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  var scrolledAfterSocket = false;

  function markWords(body) {
    if (!words.length || body.querySelector("mark.found-word")) return;
    var pattern = new RegExp("(?<![\\p{L}\\p{N}])(" + words.map(function (w) {
      return w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    }).join("|") + ")", "giu");
    var walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
    var nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function (node) {
      var text = node.nodeValue, last = 0, match, pieces = [];
      pattern.lastIndex = 0;
      while ((match = pattern.exec(text))) {
        pieces.push(document.createTextNode(text.slice(last, match.index)));
        var mark = document.createElement("mark");
        mark.className = "found-word";
        mark.textContent = match[0];
        pieces.push(mark);
        last = match.index + match[0].length;
      }
      if (!pieces.length) return;
      pieces.push(document.createTextNode(text.slice(last)));
      pieces.forEach(function (piece) { node.parentNode.insertBefore(piece, node); });
      node.remove();
    });
  }
  function showFound() {
    var message = foundId && $(foundId);
    if (!message) return false;
    message.classList.add("found");
    // A reply still being written keeps its text untouched (app.js compares it with catch-ups).
    var body = $(foundId + "-body");
    if (body && !message.classList.contains("status-streaming")) markWords(body);
    var first = message.querySelector("mark.found-word") || message;
    first.scrollIntoView({ block: "center" });
    return true;
  }
  // A hit older than the conversation's latest page: the page came showing the messages up to it
  // (?before=); the socket's list is the latest page, without it. Keep the page at the hit then, until
  // something is sent from it.
  var holdPage = Boolean(foundId && params.get("before"));
  document.addEventListener("htmx:oobBeforeSwap", function keepPageAtFound(event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!holdPage || !target || target.id !== "messages" || !fragment || !$(foundId)) return;
    if (!fragment.querySelector("#" + foundId)) event.detail.shouldSwap = false;
  });
  document.addEventListener("htmx:wsAfterSend", function releasePage() { holdPage = false; });
  if (foundId) {
    // After app.js has opened the list at its newest message (both run on DOMContentLoaded, in order).
    document.addEventListener("DOMContentLoaded", function openAtFound() { showFound(); });
    // After app.js has followed the socket's frame (it keeps a list read at its bottom there).
    document.addEventListener("htmx:wsAfterMessage", function foundAfterCatchUp() {
      if (!scrolledAfterSocket) scrolledAfterSocket = showFound();
    });
  }
})();
