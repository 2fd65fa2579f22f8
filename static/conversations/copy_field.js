// Copy buttons for a text field (the share link): <button data-copy-field="id-of-the-field">.
// The button says "Copied" for a moment; without the clipboard API the field is selected and copied.
// No inline handlers (CSP): one delegated listener.
(function () {
  "use strict";

  function confirmCopied(button) {
    if (!button.hasAttribute("data-label")) button.setAttribute("data-label", button.textContent);
    button.textContent = "Copied";
    clearTimeout(button._copiedTimer);
    button._copiedTimer = setTimeout(function () {
      button.textContent = button.getAttribute("data-label");
    }, 2000);
  }

  function copyBySelecting(field) {
    field.focus();
    field.select();
    return document.execCommand("copy");
  }

  document.addEventListener("click", function copyField(event) {
    var button = event.target.closest && event.target.closest("[data-copy-field]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy-field"));
    if (!field) return;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(
        function () { confirmCopied(button); },
        function () { if (copyBySelecting(field)) confirmCopied(button); }
      );
    } else if (copyBySelecting(field)) {
      confirmCopied(button);
    }
  });
})();
