// The price of sending the draft, under the message box (issue 25): asked of the server ~400 ms after
// the draft or its attachments change, never per keystroke; the same draft is not asked twice. The
// server counts the prompt (free) and answers the line's HTML, escaped; Send carries the signed
// estimate in the line's hidden input, so the reply's receipt can show it beside the real cost.
(function () {
  "use strict";

  var DELAY_MS = 400;
  var timer = null;
  var asked = "";      // the draft (text and attachments) the line shows, or is being asked for
  var pending = null;  // the request in flight, aborted when the draft changes again

  function line() { return document.getElementById("price-line"); }
  function form() { return document.getElementById("composer"); }

  function csrf() {
    var field = form() && form().querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function draft() {
    var fields = new FormData();
    var box = document.getElementById("composer-input");
    fields.append("message", box ? box.value : "");
    document.querySelectorAll("#attachment-chips input[name=attachments]").forEach(function (chip) {
      fields.append("attachments", chip.value);
    });
    return fields;
  }

  function keyOf(fields) {
    return JSON.stringify([fields.get("message"), fields.getAll("attachments")]);
  }

  function ask() {
    var target = line();
    if (!target) return;
    var fields = draft();
    var key = keyOf(fields);
    if (key === asked) return;
    asked = key;
    if (pending) pending.abort();
    if (fields.get("message").trim() === "" && fields.getAll("attachments").length === 0) {
      target.innerHTML = "";
      return;
    }
    pending = new AbortController();
    fetch(target.getAttribute("data-url"), {
      method: "POST",
      body: fields,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      signal: pending.signal
    }).then(function (response) {
      return response.ok ? response.text() : "";
    }).then(function (html) {
      if (asked === key) target.innerHTML = html;  // server-rendered and escaped
    }).catch(function () { /* aborted, or offline: the line stays as it was */ });
  }

  function later() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(ask, DELAY_MS);
  }

  document.addEventListener("input", function draftChanged(event) {
    if (event.target && event.target.id === "composer-input") later();
  });
  // A chip added or removed changes the draft too; a sent message empties the box.
  document.addEventListener("htmx:afterSwap", later);
  document.addEventListener("htmx:wsAfterMessage", later);
  document.addEventListener("DOMContentLoaded", function watchChips() {
    var chips = document.getElementById("attachment-chips");
    if (chips) new MutationObserver(later).observe(chips, { childList: true });
    later();
  });
})();
