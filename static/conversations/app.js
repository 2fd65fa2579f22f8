// Small enhancements on top of htmx: Enter to send, copy buttons, keeping the newest text in view.
(function () {
  "use strict";

  function composer() { return document.getElementById("composer"); }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (input.id !== "composer-input" || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    var button = document.getElementById("send-button");
    var files = document.querySelector("#attachment-chips .attachment-chip");
    if (button && !button.disabled && (input.value.trim() !== "" || files)) composer().requestSubmit(button);
  });

  // Copy a code block, or a whole reply as plain text.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-message]");
    if (!button) return;
    var text;
    if (button.hasAttribute("data-copy-message")) {
      var body = document.getElementById(button.getAttribute("data-copy-message"));
      text = body ? body.innerText : "";
    } else {
      var code = button.parentElement.querySelector("code");
      text = code ? code.innerText : "";
    }
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

  // Follow the reply as it grows, unless the reader scrolled up to read something else.
  var stickToBottom = true;
  function messages() { return document.getElementById("messages"); }
  document.addEventListener("scroll", function (event) {
    var list = messages();
    if (event.target === list) stickToBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }, true);
  function follow() {
    var list = messages();
    if (list && stickToBottom) list.scrollTop = list.scrollHeight;
  }
  document.addEventListener("htmx:wsAfterMessage", follow);
  document.addEventListener("DOMContentLoaded", follow);

  // The server closes a socket with 4401 when its sign-in ended (logged out, password changed, account
  // deactivated): reload, which lands on the login page (or, after a password change in this browser,
  // back here with the new session).
  document.addEventListener("htmx:wsClose", function (event) {
    if (event.detail && event.detail.event && event.detail.event.code === 4401) window.location.reload();
  });

  // After the server stored a sent message it replaces the input: put the cursor back in it.
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail && event.detail.target && event.detail.target.id === "composer-input") {
      event.detail.target.focus();
    }
  });
})();

// Attachments: the file picker, drag and drop and paste upload each file to the conversation's pending
// attachments (owner-only, CSRF) and show the chip the server returns; Send then names them by id.
// The limits are checked here first (the server checks them again) so a too-large file is refused
// at once; nothing typed in the composer is touched.
(function () {
  "use strict";

  var TYPES = { "image/png": "image", "image/jpeg": "image", "image/gif": "image", "image/webp": "image", "application/pdf": "pdf" };
  var EXTENSIONS = /\.(png|jpe?g|gif|webp|pdf)$/i;

  function box() { return document.getElementById("composer-attachments"); }
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

  function tooBig(file, limits) {
    var isPdf = file.type === "application/pdf" || /\.pdf$/i.test(file.name);
    var limit = isPdf ? limits.pdf : limits.image;
    return file.size > limit ? "“" + file.name + "” is too large (" + megabytes(file.size) + "; the limit is " + megabytes(limit) + ")." : "";
  }

  function upload(files) {
    var holder = box();
    if (!holder || !files.length) return;
    var limits = {
      files: parseInt(holder.dataset.maxFiles, 10),
      image: parseInt(holder.dataset.maxImageBytes, 10),
      pdf: parseInt(holder.dataset.maxPdfBytes, 10),
    };
    var chips = document.getElementById("attachment-chips");
    var count = chips.querySelectorAll(".attachment-chip").length;
    Array.prototype.forEach.call(files, function (file) {
      var name = file.name || "pasted image.png";
      if (!(file.type in TYPES) && !EXTENSIONS.test(name)) {
        showError("“" + name + "”: only PNG, JPEG, GIF and WebP images and PDFs can be attached."); return;
      }
      if (file.size === 0) { showError("“" + name + "” is empty."); return; }
      var big = tooBig(file, limits);
      if (big) { showError(big); return; }
      if (count >= limits.files) { showError("At most " + limits.files + " files can be attached to a message."); return; }
      count += 1;
      var form = new FormData();
      form.append("file", file, EXTENSIONS.test(name) ? name : name + "." + (file.type.split("/")[1] || "png"));
      var placeholder = document.createElement("div");
      placeholder.className = "attachment-chip uploading";
      placeholder.textContent = "Uploading " + name + "…";
      chips.appendChild(placeholder);
      fetch(holder.dataset.uploadUrl, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      }).then(function (response) {
        return response.text().then(function (body) {
          if (response.ok) placeholder.outerHTML = body;
          else { placeholder.remove(); count -= 1; showError(body || "The file could not be attached."); }
        });
      }).catch(function () {
        placeholder.remove(); count -= 1; showError("The file could not be uploaded: check the connection and try again.");
      });
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.id !== "attachment-input") return;
    upload(event.target.files);
    event.target.value = "";  // the files went up already; the form must not carry them again
  });

  document.addEventListener("paste", function (event) {
    if (!box() || !event.clipboardData) return;
    var files = Array.prototype.filter.call(event.clipboardData.files || [], function (f) { return f.type in TYPES; });
    if (!files.length) return;  // ordinary text: pasted as usual
    event.preventDefault();
    upload(files);
  });

  document.addEventListener("dragover", function (event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (!composer || !box()) return;
    event.preventDefault();
    composer.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (composer) composer.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var composer = event.target.closest && event.target.closest("#composer");
    if (!composer || !box() || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    composer.classList.remove("dropping");
    upload(event.dataTransfer.files);
  });

  // A chip's remove button deletes the pending upload on the server, then the chip.
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".remove-attachment");
    if (!button) return;
    var chip = button.closest(".attachment-chip");
    fetch(button.dataset.removeUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf() } })
      .then(function (response) { if (response.ok || response.status === 404) chip.remove(); });
  });

  // Over the websocket the message names its attachments by id; the file input never goes along.
  document.addEventListener("htmx:wsConfigSend", function (event) {
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
