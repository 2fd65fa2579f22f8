// Small enhancements on top of htmx: the composer and its keys, copy buttons, following the newest
// text, the connection state and the conversation drawer. No framework; no inline handlers (CSP).
(function () {
  "use strict";

  function $(id) { return document.getElementById(id); }
  function composer() { return $("composer"); }
  function input() { return $("composer-input"); }
  function messages() { return $("messages"); }
  function chat() { return document.querySelector(".chat"); }
  var connected = true;

  function hint(text) {
    var el = $("composer-hint");
    if (el) el.textContent = text || "";
  }

  function streamingReply() { return document.querySelector("#messages .message.status-streaming"); }

  function focusComposer() {
    var box = input();
    if (box && !box.readOnly && document.activeElement !== box) box.focus({ preventScroll: true });
  }

  function send() {
    var box = input(), form = composer(), button = $("send-button");
    if (!box || !form) return;
    // Files alone may be sent (13): only an empty box with no attachment chip is refused.
    var files = document.querySelector("#attachment-chips .attachment-chip");
    if (box.value.trim() === "" && !files) {
      hint("Type a message first.");
      return;
    }
    if (!connected) {
      hint("Not connected: your message is kept and can be sent once the connection is back.");
      return;
    }
    if (button && button.disabled) {
      // Never lose the text: it stays in the box until the reply has finished.
      hint(button.getAttribute("data-wait") || "Your message is kept; it can be sent once the reply has finished.");
      return;
    }
    hint("");
    form.requestSubmit(button);
  }

  function stopReply() {
    var reply = streamingReply();
    var stop = reply && reply.querySelector("button.stop");
    if (stop && connected) stop.click();
  }

  document.addEventListener("keydown", function composerKeys(event) {
    var target = event.target;
    if (event.key === "Escape") {
      var drawer = $("sidebar");
      if (drawer && drawer.classList.contains("open")) { closeDrawer(); return; }
      // Esc in a menu or the conversation list closes or leaves that; elsewhere it stops the reply.
      if (streamingReply() && !(target.closest && target.closest("details[open], .sidebar"))) {
        event.preventDefault(); stopReply(); return;
      }
    }
    if (event.altKey && event.shiftKey && (event.key === "N" || event.key === "n" || event.code === "KeyN")) {
      var link = document.querySelector(".new-conversation");
      if (link) { event.preventDefault(); window.location.assign(link.href); }
      return;
    }
    if (target.id === "composer-input" && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });

  document.addEventListener("input", function clearHintWhenTyping(event) {
    if (event.target.id === "composer-input" && event.target.value.trim()) hint("");
  });

  // The home page's Send with nothing typed: say so instead of making an empty conversation. With a
  // file still uploading, the first message waits for it, then goes (it would leave without the file).
  var sendAfterUploads = null;
  document.addEventListener("submit", function refuseEmptyFirstMessage(event) {
    var form = event.target;
    if (form.id !== "composer" || !form.hasAttribute("data-needs-text")) return;
    if (document.querySelector("#attachment-chips .uploading")) {
      event.preventDefault();
      hint("Sending once the files have uploaded…");
      if (!sendAfterUploads) {
        sendAfterUploads = setInterval(function () {
          if (document.querySelector("#attachment-chips .uploading")) return;
          clearInterval(sendAfterUploads);
          sendAfterUploads = null;
          hint("");
          form.requestSubmit($("send-button"));
        }, 150);
      }
      return;
    }
    var files = document.querySelector("#attachment-chips .attachment-chip");  // files alone may start one
    if (input() && input().value.trim() === "" && !files) {
      event.preventDefault();
      hint("Type a message first.");
      focusComposer();
    }
  });

  // Forms that destroy something ask first (data-confirm). In the capture phase, so that a refusal
  // also stops htmx's own listener on the form (ws-send) from sending it.
  document.addEventListener("submit", function confirmDestructiveForms(event) {
    var form = event.target, question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Without text the browser refuses to submit (required): say it in the page's words.
  document.addEventListener("invalid", function explainMissingText(event) {
    if (event.target.id === "composer-input") { event.preventDefault(); hint("Type a message first."); focusComposer(); }
  }, true);

  // Copy a code block; dismiss a notice or a receipt.
  document.addEventListener("click", function copyAndDismiss(event) {
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      var box = dismiss.closest("[data-dismissable], .flash");
      if (box) box.remove();
      return;
    }
    var toggle = event.target.closest("[data-drawer-toggle]");
    if (toggle) { event.preventDefault(); $("sidebar").classList.contains("open") ? closeDrawer() : openDrawer(); return; }
    if (event.target.closest("[data-drawer-close]")) { event.preventDefault(); closeDrawer(); return; }
    if (event.target.closest("#jump-latest")) { toBottom(); focusComposer(); return; }
    // A whole reply's Copy (data-copy-source) copies its markdown: nav.js.
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var code = button.parentElement.querySelector("code");
    var text = code ? code.innerText : "";
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done);
    else {
      var area = document.createElement("textarea");
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); done(); } finally { area.remove(); }
    }
  });

  // The conversation list as a drawer on narrow screens (without JS, the link opens it by :target).
  function openDrawer() {
    var drawer = $("sidebar"), toggle = document.querySelector("[data-drawer-toggle]");
    drawer.classList.add("open");
    if (toggle) toggle.setAttribute("aria-expanded", "true");
    var current = drawer.querySelector("[aria-current=page]") || drawer.querySelector("a");
    if (current) current.focus();
  }
  function closeDrawer() {
    var drawer = $("sidebar"), toggle = document.querySelector("[data-drawer-toggle]");
    if (!drawer) return;
    drawer.classList.remove("open");
    if (location.hash === "#sidebar") history.replaceState(null, "", location.pathname + location.search);
    if (toggle) { toggle.setAttribute("aria-expanded", "false"); if (window.getComputedStyle(toggle).display !== "none") toggle.focus(); }
  }

  // Follow the reply as it grows while the reader is at the bottom; otherwise offer a way back.
  var stickToBottom = true;
  function atBottom(list) { return list.scrollHeight - list.scrollTop - list.clientHeight < 48; }
  function showJump() {
    var jump = $("jump-latest");
    if (jump) jump.hidden = stickToBottom;
  }
  var autoTop = 0, autoHeight = 0;  // where the last automatic scroll left the list, and its height
  function toBottom() {
    var list = messages();
    if (!list) return;
    list.scrollTop = list.scrollHeight;
    autoTop = list.scrollTop;
    autoHeight = list.scrollHeight;
    stickToBottom = true;
    showJump();
  }
  document.addEventListener("scroll", function trackScrollPosition(event) {
    var list = messages();
    if (event.target === list) { stickToBottom = atBottom(list); showJump(); }
  }, true);
  function follow() {
    var list = messages();
    // The reader scrolled up since the last automatic scroll, and its scroll event is not in yet.
    if (list && list.scrollTop + 4 < autoTop && list.scrollHeight >= autoHeight) stickToBottom = false;
    if (stickToBottom) toBottom(); else showJump();
  }

  // A catch-up must never show less of a reply than the page already has: a socket that (re)joins gets
  // the list as last saved (up to a second behind what streamed) before the live text catches up.
  function sourceOf(root, id) {
    var el = root.querySelector ? root.querySelector("#" + id + "-body.source") : null;
    return el ? el.textContent : null;
  }
  document.addEventListener("htmx:oobBeforeSwap", function keepStreamingTextInPlace(event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!target || !fragment) return;
    if (target.id === "messages") {
      target.querySelectorAll(".message.status-streaming[data-attempt]").forEach(function (shown) {
        var incoming = fragment.querySelector("#" + shown.id);
        if (!incoming || incoming.getAttribute("data-attempt") !== shown.getAttribute("data-attempt")) return;
        if (!incoming.classList.contains("status-streaming")) return;
        var have = sourceOf(shown, shown.id), got = sourceOf(incoming, shown.id);
        if (have !== null && got !== null && have.length > got.length && have.indexOf(got) === 0) {
          incoming.replaceWith(shown.cloneNode(true));
        }
      });
    } else if (fragment.hasAttribute && fragment.hasAttribute("data-catch-up")) {
      // A snapshot shorter than what is shown, of the same text: keep what is shown and its rendering
      // (the blocks and tail swaps of the same frame are skipped too).
      var have = target.textContent, got = fragment.textContent;
      if (have.length > got.length && have.indexOf(got) === 0) {
        event.detail.shouldSwap = false;
        var domId = target.id.replace(/-body$/, "");
        skipping[domId + "-blocks"] = skipping[domId + "-tail"] = true;
      }
    } else if (skipping[target.id]) {
      event.detail.shouldSwap = false;
      delete skipping[target.id];
    }
  });
  var skipping = {};

  document.addEventListener("htmx:wsAfterMessage", follow);
  document.addEventListener("DOMContentLoaded", function openAtNewest() {
    toBottom();
    // The composer is where typing goes, unless the page opened somewhere else on purpose (#fragment).
    if (!location.hash || location.hash === "#composer-input") focusComposer();
    var drawer = $("sidebar");
    if (drawer && location.hash === "#sidebar") drawer.classList.add("open");
  });
  window.addEventListener("resize", follow);

  // Connection state: say when the socket is down, and keep the draft while nothing can be sent.
  function setConnected(state) {
    connected = state;
    var status = $("connection-status"), box = input(), section = chat();
    if (!status || !section) return;
    section.classList.toggle("disconnected", !state);
    status.hidden = state;
    status.textContent = state ? "" : "Connection lost. Reconnecting… Sending is paused; your draft is kept.";
    var button = $("send-button");
    // Send waits for the connection; once it is back the server sends the button's real state.
    if (button && !state) { button.disabled = true; button.setAttribute("data-wait", status.textContent); }
    if (box) {
      box.readOnly = !state;
      if (state) box.removeAttribute("aria-disabled"); else box.setAttribute("aria-disabled", "true");
    }
    if (state) { hint(""); focusComposer(); }
  }
  document.addEventListener("htmx:wsOpen", function connectionOpen() { setConnected(true); });
  document.addEventListener("htmx:wsClose", function connectionClosed(event) {
    // The server closes a socket with 4401 when its sign-in ended (logged out, password changed, account
    // deactivated): reload, which lands on the login page (or, after a password change in this browser,
    // back here with the new session).
    if (event.detail && event.detail.event && event.detail.event.code === 4401) { window.location.reload(); return; }
    setConnected(false);
  });
  document.addEventListener("htmx:wsError", function connectionFailed() { setConnected(false); });

  // After the server stored a sent message it replaces the input: put the cursor back in it.
  document.addEventListener("htmx:oobAfterSwap", function focusAfterSwap(event) {
    var target = event.detail && event.detail.target;
    if (!target) return;
    if (target.id === "composer-input") focusComposer();
    if (target.id === "send-button" && !target.disabled) hint("");
    // A title Claude wrote arrives over the socket as the heading: the tab follows it, as after a rename.
    if (target.id === "conversation-title") {
      var heading = document.getElementById("conversation-title");
      if (heading) document.title = heading.textContent.trim() + " · Team chat";
    }
    // "Thought for N s": the answer has started, so the thinking above it folds away (a click opens it).
    if (/-thinking-summary$/.test(target.id)) {
      var summary = document.getElementById(target.id);
      if (summary && !summary.querySelector(".working") && summary.parentElement) summary.parentElement.open = false;
    }
  });
  // Whatever was clicked to send (the Send button), typing goes on in the composer.
  document.addEventListener("htmx:wsAfterSend", function focusAfterSend() { focusComposer(); });
})();

// Attachments: the file picker, drag and drop and paste upload each file to the conversation's pending
// attachments (owner-only, CSRF) and show the chip the server returns; Send then names them by id.
// The limits are checked here first (the server checks them again) so a too-large file is refused
// at once; nothing typed in the composer is touched.
(function () {
  "use strict";

  var TYPES = { "image/png": "image", "image/jpeg": "image", "image/gif": "image", "image/webp": "image", "application/pdf": "pdf" };
  var IMAGES = /\.(png|jpe?g|gif|webp)$/i;

  function box() { return document.getElementById("composer-attachments"); }
  // The extensions the server takes: the picker's `accept` lists them (text files are known by theirs).
  function extensionOf(name) { var dot = name.lastIndexOf("."); return dot < 0 ? "" : name.slice(dot).toLowerCase(); }
  function accepted(name) {
    var picker = document.getElementById("attachment-input");
    var list = picker ? (picker.getAttribute("accept") || "").split(",") : [];
    return extensionOf(name) !== "" && list.indexOf(extensionOf(name)) >= 0;
  }
  function csrf() {
    var headers = document.body.getAttribute("hx-headers");
    try { return JSON.parse(headers)["X-CSRFToken"]; } catch (e) { return ""; }
  }
  function showError(text) {
    var errors = document.getElementById("chat-errors");
    if (!errors) return;
    errors.textContent = "";
    var p = document.createElement("p");
    p.className = "error";
    p.textContent = text;
    errors.appendChild(p);
  }
  function megabytes(bytes) { return Math.round(bytes / (1024 * 1024)) + " MB"; }

  function size(bytes) { return bytes >= 1024 * 1024 ? megabytes(bytes) : Math.round(bytes / 1024) + " KB"; }
  function tooBig(file, limits) {
    var isPdf = file.type === "application/pdf" || /\.pdf$/i.test(file.name);
    var isImage = (file.type in TYPES && !isPdf) || IMAGES.test(file.name);
    var limit = isPdf ? limits.pdf : isImage ? limits.image : limits.text;
    return file.size > limit ? "“" + file.name + "” is too large (" + size(file.size) + "; the limit is " + size(limit) + ")." : "";
  }
  // A successful upload clears an earlier refusal: it no longer describes the composer.
  function clearErrors() { var errors = document.getElementById("chat-errors"); if (errors) errors.textContent = ""; }

  // `done(ok)`, when given, is told for each file whether it became a chip (composer_length.js waits
  // for it before taking pasted text out of the box).
  function upload(files, done) {
    done = done || function () {};
    var holder = box();
    if (!holder || !files.length) return;
    var limits = {
      files: parseInt(holder.dataset.maxFiles, 10),
      image: parseInt(holder.dataset.maxImageBytes, 10),
      pdf: parseInt(holder.dataset.maxPdfBytes, 10),
      text: parseInt(holder.dataset.maxTextBytes, 10),
    };
    var chips = document.getElementById("attachment-chips");
    var count = chips.querySelectorAll(".attachment-chip").length;
    Array.prototype.forEach.call(files, function (file) {
      var name = file.name || "pasted image.png";
      var refuse = function (text) { showError(text); done(false); };
      if (!(file.type in TYPES) && !accepted(name)) {
        refuse("“" + name + "”: only PNG, JPEG, GIF and WebP images, PDFs and text files (plain text, Markdown, CSV, JSON, source code) can be attached."); return;
      }
      if (file.size === 0) { refuse("“" + name + "” is empty."); return; }
      var big = tooBig(file, limits);
      if (big) { refuse(big); return; }
      if (count >= limits.files) { refuse("At most " + limits.files + " files can be attached to a message."); return; }
      count += 1;
      var form = new FormData();
      form.append("file", file, accepted(name) ? name : name + "." + (file.type.split("/")[1] || "png"));
      var placeholder = document.createElement("div");
      placeholder.className = "attachment-chip uploading";
      placeholder.textContent = "Uploading " + name + "…";
      chips.appendChild(placeholder);
      fetch(holder.dataset.uploadUrl, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      }).then(function (response) {
        return response.text().then(function (body) {
          if (response.ok) {
            placeholder.insertAdjacentHTML("afterend", body);
            var chip = placeholder.nextElementSibling;
            placeholder.remove();
            htmx.process(chip);  // its remove button is htmx's
            clearErrors();
            done(true);
          } else { placeholder.remove(); count -= 1; refuse(body || "The file could not be attached."); }
        });
      }).catch(function () {
        placeholder.remove(); count -= 1; refuse("The file could not be uploaded: check the connection and try again.");
      });
    });
  }

  // Other scripts attach files through this event (composer_length.js: long text as a text file).
  document.addEventListener("chat:attach", function uploadGiven(event) { upload(event.detail.files, event.detail.done); });

  document.addEventListener("change", function uploadPicked(event) {
    if (event.target.id !== "attachment-input") return;
    upload(event.target.files);
    event.target.value = "";  // the files went up already; the form must not carry them again
  });

  document.addEventListener("paste", function uploadPasted(event) {
    if (!box() || !event.clipboardData) return;
    var files = Array.prototype.filter.call(event.clipboardData.files || [], function (f) { return f.type in TYPES || accepted(f.name); });
    if (!files.length) return;  // ordinary text: pasted as usual
    event.preventDefault();
    upload(files);
  });

  document.addEventListener("dragover", function showDropTarget(event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (!composer || !box()) return;
    event.preventDefault();
    composer.classList.add("dropping");
  });
  document.addEventListener("dragleave", function hideDropTarget(event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (composer) composer.classList.remove("dropping");
  });
  document.addEventListener("drop", function uploadDropped(event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (!composer || !box() || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    composer.classList.remove("dropping");
    upload(event.dataTransfer.files);
  });

  // A chip's remove button is htmx's (hx-post, then the chip is deleted); an upload the server no longer
  // has (sent elsewhere, or expired after a day) is a 404: its chip goes all the same.
  document.addEventListener("htmx:responseError", function removeGoneChip(event) {
    var button = event.detail.elt;
    if (!button.classList || !button.classList.contains("remove-attachment") || event.detail.xhr.status !== 404) return;
    var chip = button.closest(".attachment-chip");
    if (chip) chip.remove();
  });

  // Over the websocket the message names its attachments by id; the file input never goes along.
  document.addEventListener("htmx:wsConfigSend", function sendAttachmentIds(event) {
    var parameters = event.detail.parameters;
    if (!parameters || !("message" in parameters)) return;
    if (document.querySelector("#attachment-chips .uploading")) {
      event.preventDefault();  // the message would leave without the file still uploading
      showError("Wait for the attachments to finish uploading, then send.");
      return;
    }
    if (typeof parameters.delete === "function") { parameters.delete("files"); return; }
    delete parameters.files;
    var ids = parameters.attachments;
    if (ids !== undefined && !Array.isArray(ids)) parameters.attachments = [ids];
  });
})();
