// The composer's length: nothing typed or pasted is ever cut. From 90% of the longest message the
// server takes a counter shows ("31,200 / 32,000"); past it a sentence says so and Send waits, and
// "Attach as a text file" turns the text into a text attachment instead. A long paste (over
// LONG_PASTE characters) offers the same for what was pasted. No inline handlers (CSP).
(function () {
  "use strict";

  var LONG_PASTE = 10000;  // characters: a paste this long is more likely a document than a message
  var lastPaste = null;  // the text of the latest long paste, while it is still in the box

  function $(id) { return document.getElementById(id); }
  function box() { return $("composer-input"); }
  function number(n) { return n.toLocaleString("en-US"); }
  function limitOf(input) { return parseInt(input.getAttribute("data-max-chars"), 10) || 32000; }

  // Characters as the server counts them: code points, line ends as one, surrounding spaces left out.
  function length(text) {
    text = text.replace(/\r\n/g, "\n").trim();
    var n = text.length;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff) { n -= 1; i += 1; }
    }
    return n;
  }

  function tooLong(input) { return length(input.value) > limitOf(input); }

  function attachButton() {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link attach-as-file";
    button.textContent = "Attach as a text file";
    return button;
  }

  function show() {
    var input = box(), line = $("composer-length");
    if (!input || !line) return;
    var n = length(input.value), limit = limitOf(input);
    if (lastPaste !== null && input.value.indexOf(lastPaste) < 0) lastPaste = null;
    line.textContent = "";
    line.classList.toggle("over", n > limit);
    if (n > limit) {
      line.appendChild(document.createTextNode(
        "The message is " + number(n) + " characters; the limit is " + number(limit) +
        ". Nothing was cut: shorten it, or send it as a file. "));
      line.appendChild(attachButton());
    } else if (lastPaste !== null) {
      line.appendChild(document.createTextNode("You pasted " + number(length(lastPaste)) + " characters. "));
      line.appendChild(attachButton());
      if (n >= limit * 0.9) line.appendChild(document.createTextNode(" " + number(n) + " / " + number(limit)));
    } else if (n >= limit * 0.9) {
      line.textContent = number(n) + " / " + number(limit);
    }
    line.hidden = line.textContent === "";
    input.setAttribute("aria-invalid", n > limit ? "true" : "false");
  }

  document.addEventListener("input", function countAsTyped(event) { if (event.target.id === "composer-input") show(); });
  document.addEventListener("paste", function noteLongPaste(event) {
    if (event.target.id !== "composer-input" || !event.clipboardData) return;
    var text = event.clipboardData.getData("text/plain");
    lastPaste = text && length(text) > LONG_PASTE ? text : null;
    // The box holds the paste once the browser inserted it (after this event).
    setTimeout(show, 0);
  });

  // Send waits while the text is too long: the server would refuse it, and the box keeps it all.
  // In the capture phase, so that htmx's own listener (ws-send) does not send it either.
  document.addEventListener("submit", function refuseTooLong(event) {
    var input = box();
    if (event.target.id !== "composer" || !input || !tooLong(input)) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    show();
    var hint = $("composer-hint");
    if (hint) hint.textContent = "Too long to send as a message: shorten it or attach it as a text file.";
  }, true);

  // The text (the long paste, else the whole box) becomes "Pasted text.txt"; it leaves the box only
  // once the file is a chip, so a refused upload loses nothing.
  document.addEventListener("click", function attachAsFile(event) {
    if (!event.target.closest(".attach-as-file")) return;
    var input = box();
    if (!input) return;
    var whole = lastPaste === null || input.value.indexOf(lastPaste) < 0;
    var text = whole ? input.value : lastPaste;
    var file = new File([text], "Pasted text.txt", { type: "text/plain" });
    var button = event.target.closest(".attach-as-file");
    button.disabled = true;
    document.dispatchEvent(new CustomEvent("chat:attach", { detail: { files: [file], done: function (ok) {
      button.disabled = false;
      if (!ok) return;
      if (whole) input.value = "";
      else {
        var at = input.value.indexOf(text);
        if (at >= 0) input.value = input.value.slice(0, at) + input.value.slice(at + text.length);
      }
      lastPaste = null;
      show();
      var hint = $("composer-hint");
      if (hint) hint.textContent = "";
      input.focus();
    } } }));
  });

  // The home page's composer may send files alone: app.js says "Type a message first" when neither is there.
  document.addEventListener("DOMContentLoaded", function () {
    var input = box(), form = $("composer");
    if (input && form && form.hasAttribute("data-needs-text")) input.required = false;
    show();
  });
  // After a send the server replaces the box (empty): the counter follows.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "composer-input") { lastPaste = null; show(); }
  });
})();
