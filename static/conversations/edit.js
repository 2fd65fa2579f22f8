// Editing a sent message in place (conversation.html#edit_form, opened by its Edit link with htmx):
// the box gets the cursor, Enter sends and Shift+Enter adds a line as in the composer, Esc or Cancel
// closes the editor and shows the message again, and the editor's files are chips like the composer's:
// the message's own ones can be removed, new ones uploaded (owner-only, CSRF) and sent by id.
(function () {
  "use strict";

  var editLinks = new WeakMap();  // an open editor's holder -> the Edit link it replaced

  function formOf(element) { return element && element.closest ? element.closest("form.edit-form") : null; }
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }
  function say(form, text) {
    var error = form.querySelector(".edit-error");
    if (error) error.textContent = text;
  }
  function focusEnd(box) {
    box.focus({ preventScroll: false });
    box.setSelectionRange(box.value.length, box.value.length);
  }

  document.addEventListener("htmx:beforeSwap", function rememberEditLink(event) {
    var holder = event.detail.target;
    if (holder && holder.classList.contains("edit-message") && !holder.querySelector("form")) {
      editLinks.set(holder, holder.innerHTML);
    }
  });
  document.addEventListener("htmx:afterSwap", function focusEditor(event) {
    var holder = event.detail.target;
    var box = holder && holder.classList.contains("edit-message") ? holder.querySelector(".edit-form textarea") : null;
    if (box) focusEnd(box);
  });

  // Closing the editor: the Edit link comes back (and with it the message, shown again by the CSS);
  // files uploaded in it and never sent are discarded. Without the in-place editor (its own page),
  // Cancel is a plain link back to the conversation.
  function cancel(form) {
    var holder = form.parentElement;
    if (!holder || !editLinks.has(holder)) return false;
    form.querySelectorAll(".remove-attachment[hx-post]").forEach(function (button) {
      fetch(button.getAttribute("hx-post"), {
        method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf(), "HX-Request": "true" },
      });
    });
    holder.innerHTML = editLinks.get(holder);
    editLinks.delete(holder);
    htmx.process(holder);
    var link = holder.querySelector("a");
    if (link) link.focus();
    return true;
  }

  function send(form) {
    var box = form.querySelector("textarea[name=message]");
    if (form.querySelector(".attachment-chip.uploading")) { say(form, "Wait for the files to finish uploading, then send."); return; }
    if (box.value.trim() === "" && !form.querySelector(".attachment-chip")) { say(form, "Type a message first."); return; }
    say(form, "");
    form.requestSubmit(form.querySelector("button[type=submit].primary"));
  }

  // Capture phase: Esc in the editor closes it and does nothing else (elsewhere on the page it stops
  // a reply being written).
  document.addEventListener("keydown", function editorKeys(event) {
    var form = formOf(event.target);
    if (!form) return;
    if (event.key === "Escape") {
      if (cancel(form)) { event.preventDefault(); event.stopPropagation(); }
      return;
    }
    if (event.key === "Enter" && event.target.name === "message" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send(form);
    }
  }, true);

  document.addEventListener("click", function editorButtons(event) {
    var target = event.target;
    var form = formOf(target);
    if (!form) return;
    if (target.closest(".edit-cancel")) {
      if (cancel(form)) event.preventDefault();
    } else if (target.closest(".remove-kept")) {
      // The earlier version keeps its file; this one goes without it (without JavaScript the button
      // posts the form, which comes back without the file).
      event.preventDefault();
      var chip = target.closest(".attachment-chip");
      var next = chip.nextElementSibling || form.querySelector(".edit-file-input");
      chip.remove();
      if (next && next.focus) next.focus();
    }
  });

  function upload(form, files) {
    var chips = form.querySelector(".attachment-chips");
    var limit = parseInt(form.dataset.maxFiles, 10) || 0;
    say(form, "");
    Array.prototype.forEach.call(files, function (file) {
      if (limit && chips.querySelectorAll(".attachment-chip").length >= limit) {
        say(form, "At most " + limit + " files can be attached to a message.");
        return;
      }
      var body = new FormData();
      body.append("file", file, file.name);
      var placeholder = document.createElement("div");
      placeholder.className = "attachment-chip uploading";
      placeholder.textContent = "Uploading " + file.name + "…";
      chips.appendChild(placeholder);
      fetch(form.dataset.uploadUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": csrf(), "X-Requested-With": "fetch" },
      }).then(function (response) {
        return response.text().then(function (text) {
          if (!response.ok) { placeholder.remove(); say(form, text || "The file could not be attached."); return; }
          placeholder.insertAdjacentHTML("afterend", text);
          var chip = placeholder.nextElementSibling;
          placeholder.remove();
          htmx.process(chip);  // its remove button is htmx's
        });
      }).catch(function () {
        placeholder.remove();
        say(form, "The file could not be uploaded: check the connection and try again.");
      });
    });
  }

  document.addEventListener("change", function uploadPickedForEdit(event) {
    var form = formOf(event.target);
    if (!form || !event.target.classList.contains("edit-file-input")) return;
    upload(form, event.target.files);
    event.target.value = "";  // uploaded already: the frame names them by id
  });
})();
