// The try-on pages' small behaviours: the photo drop zone and the before/after slider.
// Everything works without this script; it only adds the preview and the slider.
(function () {
  "use strict";

  function setUpDropzone(zone) {
    var input = zone.querySelector("input[type=file]");
    var preview = zone.querySelector("[data-dropzone-preview]");
    function show(file) {
      if (!file || !preview) return;
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
    }
    input.addEventListener("change", function () { show(input.files[0]); });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show(input.files[0]);
      }
    });
  }

  function setUpCompare(figure) {
    var range = figure.querySelector("[data-compare-range]");
    var before = figure.querySelector("[data-compare-before]");
    function update() { before.style.clipPath = "inset(0 " + (100 - range.value) + "% 0 0)"; }
    range.addEventListener("input", update);
    update();
  }

  function init(root) {
    root.querySelectorAll("[data-dropzone]").forEach(setUpDropzone);
    root.querySelectorAll("[data-compare]").forEach(setUpCompare);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  // The job page's status part is replaced by htmx when the result arrives.
  document.addEventListener("htmx:afterSwap", function (event) { init(event.target); });
}());
