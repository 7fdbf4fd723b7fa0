// The mask painter: a brush and an eraser over the product image. The canvas holds the mask in
// a tint colour (its alpha is the mask); "Save mask" exports it as a black and white PNG of the
// product image's exact size and sends it in the form's file field.
(function () {
  "use strict";

  var TINT = [255, 0, 110];
  // Larger pictures are painted at this long side and scaled up on export: undo snapshots of a
  // full-size 40-megapixel canvas would take gigabytes.
  var MAX_WORK_SIDE = 1600;
  var UNDO_LIMIT = 12;

  // The painted PNG travels in the form's file field, which only a DataTransfer can fill.
  function canAttachFiles() {
    try {
      return Boolean(new DataTransfer().files);
    } catch (error) {
      return false;
    }
  }

  function setUp(form) {
    var stage = form.querySelector("[data-painter-stage]");
    var canvas = form.querySelector("[data-canvas]");
    var cursor = form.querySelector("[data-cursor]");
    var sizeInput = form.querySelector("[data-size]");
    var sizeOutput = form.querySelector("[data-size-output]");
    var undoButton = form.querySelector("[data-undo]");
    var resetButton = form.querySelector("[data-reset]");
    var toolButtons = form.querySelectorAll("[data-tool]");
    var saveButton = form.querySelector("[data-save]");
    var fileInput = form.querySelector("input[type=file][name=mask]");
    var errors = form.querySelector("[data-painter-errors]");

    var fullWidth = canvas.width;
    var fullHeight = canvas.height;
    // The whole picture in view while painting, however tall: no wider than the window's height
    // allows. Set here, as a page's style attribute would break the Content-Security-Policy.
    stage.style.maxWidth =
      "max(16rem, calc((100vh - 9rem) * " + fullWidth + " / " + fullHeight + "))";
    var scale = Math.min(1, MAX_WORK_SIDE / Math.max(fullWidth, fullHeight));
    canvas.width = Math.max(1, Math.round(fullWidth * scale));
    canvas.height = Math.max(1, Math.round(fullHeight * scale));
    var context = canvas.getContext("2d", { willReadFrequently: true });

    var tool = "brush";
    var saved = null; // the mask as loaded: what "Reset" goes back to
    var history = [];
    var painting = null; // {x, y} of the last point while a stroke is drawn

    // Without this script the file field is the way to send a mask; with it, the canvas is.
    form.querySelector("[data-upload-fallback]").hidden = true;
    form.querySelector("[data-painter-toolbar]").hidden = false;
    form.querySelector("[data-painter-help]").hidden = false;
    fileInput.required = false;

    function snapshot() {
      return context.getImageData(0, 0, canvas.width, canvas.height);
    }

    function updateButtons() {
      undoButton.disabled = history.length === 0;
      resetButton.disabled = saved === null;
    }

    function remember() {
      history.push(snapshot());
      if (history.length > UNDO_LIMIT) history.shift();
      updateButtons();
    }

    function loadMask(url) {
      if (!url) {
        saved = snapshot();
        updateButtons();
        return;
      }
      var picture = new Image();
      picture.onload = function () {
        context.drawImage(picture, 0, 0, canvas.width, canvas.height);
        var pixels = snapshot();
        var data = pixels.data;
        for (var i = 0; i < data.length; i += 4) {
          var on = data[i] >= 128;
          data[i] = TINT[0];
          data[i + 1] = TINT[1];
          data[i + 2] = TINT[2];
          data[i + 3] = on ? 255 : 0;
        }
        context.putImageData(pixels, 0, 0);
        saved = pixels;
        updateButtons();
      };
      picture.onerror = function () {
        showError("The saved mask could not be loaded; you can still paint a new one.");
        saved = snapshot();
        updateButtons();
      };
      picture.src = url;
    }

    function showError(text) {
      errors.textContent = "";
      var line = document.createElement("p");
      line.className = "error";
      line.textContent = text;
      errors.appendChild(line);
    }

    // Canvas pixels per on-screen pixel: the brush size is what the merchant sees.
    function pixelRatio() {
      var box = canvas.getBoundingClientRect();
      return box.width ? canvas.width / box.width : 1;
    }

    function brushWidth() {
      return Number(sizeInput.value) * pixelRatio();
    }

    function pointAt(event) {
      var box = canvas.getBoundingClientRect();
      var ratio = pixelRatio();
      return { x: (event.clientX - box.left) * ratio, y: (event.clientY - box.top) * ratio };
    }

    function stroke(from, to) {
      context.save();
      context.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
      context.strokeStyle = context.fillStyle = "rgb(" + TINT.join(",") + ")";
      context.lineWidth = brushWidth();
      context.lineCap = "round";
      context.lineJoin = "round";
      if (from.x === to.x && from.y === to.y) {
        context.beginPath();
        context.arc(to.x, to.y, context.lineWidth / 2, 0, 2 * Math.PI);
        context.fill();
      } else {
        context.beginPath();
        context.moveTo(from.x, from.y);
        context.lineTo(to.x, to.y);
        context.stroke();
      }
      context.restore();
    }

    function moveCursor(event) {
      var box = stage.getBoundingClientRect();
      var size = Number(sizeInput.value);
      cursor.style.width = cursor.style.height = size + "px";
      cursor.style.transform =
        "translate(" + (event.clientX - box.left - size / 2) + "px," +
        (event.clientY - box.top - size / 2) + "px)";
      cursor.hidden = false;
    }

    canvas.addEventListener("pointerdown", function (event) {
      if (event.button !== 0) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      remember();
      painting = pointAt(event);
      stroke(painting, painting);
    });
    canvas.addEventListener("pointermove", function (event) {
      moveCursor(event);
      if (!painting) return;
      var next = pointAt(event);
      stroke(painting, next);
      painting = next;
    });
    function endStroke() { painting = null; }
    canvas.addEventListener("pointerup", endStroke);
    canvas.addEventListener("pointercancel", endStroke);
    canvas.addEventListener("pointerleave", function () { cursor.hidden = true; });

    function choose(name) {
      tool = name;
      stage.dataset.tool = name;
      toolButtons.forEach(function (button) {
        button.setAttribute("aria-pressed", String(button.dataset.tool === name));
      });
    }
    toolButtons.forEach(function (button) {
      button.addEventListener("click", function () { choose(button.dataset.tool); });
    });

    function showSize() { sizeOutput.textContent = sizeInput.value + " px"; }
    sizeInput.addEventListener("input", showSize);

    function undo() {
      if (!history.length) return;
      context.putImageData(history.pop(), 0, 0);
      updateButtons();
    }
    undoButton.addEventListener("click", undo);
    resetButton.addEventListener("click", function () {
      if (!saved) return;
      remember();
      context.putImageData(saved, 0, 0);
    });

    document.addEventListener("keydown", function (event) {
      var target = event.target;
      if (target.matches && target.matches("input[type=text], input[type=number], textarea")) return;
      var key = event.key.toLowerCase();
      if ((event.ctrlKey || event.metaKey) && key === "z") {
        event.preventDefault();
        undo();
      } else if (event.ctrlKey || event.metaKey || event.altKey) {
        return;
      } else if (key === "b") {
        choose("brush");
      } else if (key === "e") {
        choose("eraser");
      } else if (key === "[" || key === "]") {
        sizeInput.value = Number(sizeInput.value) + (key === "]" ? 1 : -1) * Number(sizeInput.step);
        showSize();
      }
    });

    // Black and white at the product image's size: anti-aliased stroke edges become one or
    // the other, as the server stores them.
    function exportMask(done) {
      var out = document.createElement("canvas");
      out.width = fullWidth;
      out.height = fullHeight;
      var outContext = out.getContext("2d", { willReadFrequently: true });
      outContext.drawImage(canvas, 0, 0, fullWidth, fullHeight);
      var pixels = outContext.getImageData(0, 0, fullWidth, fullHeight);
      var data = pixels.data;
      for (var i = 0; i < data.length; i += 4) {
        var value = data[i + 3] >= 128 ? 255 : 0;
        data[i] = data[i + 1] = data[i + 2] = value;
        data[i + 3] = 255;
      }
      outContext.putImageData(pixels, 0, 0);
      out.toBlob(done, "image/png");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      saveButton.disabled = true;
      saveButton.textContent = "Saving…";
      exportMask(function (blob) {
        var files = new DataTransfer();
        files.items.add(new File([blob], "mask.png", { type: "image/png" }));
        fileInput.files = files.files;
        form.submit();
      });
    });

    // Coming back with the browser's Back button shows the page as it was left: saving again
    // must work.
    window.addEventListener("pageshow", function () {
      saveButton.disabled = false;
      saveButton.textContent = "Save mask";
    });

    choose("brush");
    showSize();
    loadMask(form.dataset.maskUrl);
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Without a way to send the painting, the page stays as it is without script: a file field.
    if (!canAttachFiles()) return;
    document.querySelectorAll("[data-mask-painter]").forEach(setUp);
  });
}());
