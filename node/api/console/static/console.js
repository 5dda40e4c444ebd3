// The console's only script, and nothing depends on it: the inbox reloads itself every
// minute to show new hits, unless someone is typing a note or has a field focused.
"use strict";
(function () {
  if (document.body.dataset.page !== "inbox") return;
  var RELOAD_MS = 60000;
  function busy() {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "SELECT")) return true;
    return Array.prototype.some.call(
      document.querySelectorAll("form.ack input[name=note]"),
      function (field) { return field.value !== ""; }
    );
  }
  setInterval(function () {
    if (!busy() && document.visibilityState === "visible") window.location.reload();
  }, RELOAD_MS);
})();
