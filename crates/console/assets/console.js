// Posthorn console: the only script, served from /assets (the page's
// Content-Security-Policy allows no inline script). Copy buttons.
"use strict";
document.addEventListener("click", function (ev) {
  var button = ev.target.closest ? ev.target.closest("button.copy") : null;
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  var text = source.textContent;
  var done = function () {
    button.classList.add("copied");
    setTimeout(function () { button.classList.remove("copied"); }, 1500);
  };
  var select = function () {
    var range = document.createRange();
    range.selectNodeContents(source);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  };
  if (navigator.clipboard && navigator.clipboard.writeText) {
    navigator.clipboard.writeText(text).then(done, select);
  } else {
    select();
  }
});
