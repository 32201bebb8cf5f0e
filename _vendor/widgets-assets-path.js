// The book's own file (not vendored). Loaded after require.js and just before
// html-manager/embed-amd.js. The widget manager's bundled CSS fetches its icon fonts from a
// path derived from the bundle's AMD module URL, which require.js otherwise resolves relative
// to each page (so it 404s); map the module to the vendored copy beside this file.
(function () {
  var base = document.currentScript.src.replace(/[^/]*$/, "") + "html-manager";
  window.__jupyter_widgets_assets_path__ = base + "/";
  if (window.requirejs) {
    window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": base } });
  }
})();
