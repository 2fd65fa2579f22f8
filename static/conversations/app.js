// Small enhancements on top of htmx: Enter to send, copy buttons, keeping the newest text in view.
(function () {
  "use strict";

  function composer() { return document.getElementById("composer"); }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (input.id !== "composer-input" || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    var button = document.getElementById("send-button");
    if (button && !button.disabled && input.value.trim() !== "") composer().requestSubmit(button);
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
