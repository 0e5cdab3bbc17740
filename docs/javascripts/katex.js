// Typesets the formulas pymdownx.arithmatex marked (span.arithmatex holding \(...\), div.arithmatex
// holding \[...\]) with the KaTeX vendored under docs/vendor/katex: no network, works from file://.
// A formula KaTeX cannot parse is reported on the console (the site's browser test fails on it).
(function () {
  function render(root) {
    document.documentElement.setAttribute("data-math", "typesetting");
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.getAttribute("data-typeset")) return;
      var tex = el.textContent.trim().replace(/^\\[(\[]/, "").replace(/\\[)\]]$/, "");
      try {
        katex.render(tex, el, { displayMode: el.tagName === "DIV", throwOnError: true });
        el.setAttribute("data-typeset", "1");
      } catch (err) {
        console.error("KaTeX could not typeset " + JSON.stringify(tex) + ": " + err.message);
      }
    });
    document.documentElement.setAttribute("data-math", "done");  // the browser test waits for this
  }
  if (typeof document$ !== "undefined") {
    document$.subscribe(function () { render(document.body); });
  } else {
    document.addEventListener("DOMContentLoaded", function () { render(document.body); });
  }
})();
