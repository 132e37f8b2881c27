/* Preview: classify a dropped image (as _base64) or a URL (as _url) with POST /v2/classify
   and show every label with its probability as a bar. */
"use strict";

(function () {
  var card = document.getElementById("preview-card");
  if (!card) return;
  var taskId = card.getAttribute("data-task-id");
  var classifyUrl = card.getAttribute("data-classify-url");
  var maxBytes = parseInt(card.getAttribute("data-max-bytes"), 10) || 10485760;
  var fileInput = document.getElementById("preview-file");
  var urlForm = document.getElementById("preview-url-form");
  var urlInput = document.getElementById("preview-url");
  var versionSelect = document.getElementById("preview-version");
  var empty = document.getElementById("preview-empty");
  var figure = document.querySelector(".preview-figure");
  var img = document.getElementById("preview-img");
  var errorBox = document.getElementById("preview-error");
  var best = document.getElementById("preview-best");
  var bars = document.getElementById("preview-bars");

  function reset(src) {
    empty.hidden = true;
    errorBox.hidden = true;
    best.hidden = true;
    bars.textContent = "";
    figure.hidden = !src;
    if (src) img.src = src;
  }

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    best.hidden = true;
  }

  function bar(label, isBest) {
    var li = document.createElement("li");
    li.className = "prob" + (isBest ? " best" : "");
    var name = document.createElement("span");
    name.className = "prob-name";
    name.textContent = label.name;
    name.title = label.name;
    var meter = document.createElement("progress");
    meter.className = "bar bar-lg" + (isBest ? "" : " bar-muted");
    meter.max = 1000;
    meter.value = Math.round(1000 * (Number(label.prob) || 0));
    meter.setAttribute("aria-label", label.name);
    var value = document.createElement("span");
    value.className = "prob-value";
    value.textContent = window.Vize.formatPct(Number(label.prob) || 0);
    li.append(name, meter, value);
    return li;
  }

  function show(result) {
    if (!result.ok) return fail(window.Vize.errorText(result));
    var record = (result.data.records || [])[0];
    if (!record) return fail("The server returned no result.");
    if (record._status && record._status.code >= 400) return fail(record._status.text);
    var labels = (record.labels || []).slice().sort(function (a, b) { return b.prob - a.prob; });
    var top = record.best_label || labels[0];
    if (top) {
      best.textContent = "";
      best.append("Best label: ");
      var strong = document.createElement("strong");
      strong.id = "preview-best-label";
      strong.textContent = top.name;
      best.append(strong, " (" + window.Vize.formatPct(Number(top.prob) || 0) + ", model v" + result.data.version + ")");
      best.hidden = false;
    }
    labels.forEach(function (label) { bars.appendChild(bar(label, top && label.id === top.id)); });
    /* On a phone the result card sits below the form: bring it into view. */
    document.getElementById("result-title").scrollIntoView({ block: "nearest" });
  }

  function classify(record) {
    var body = { task_id: taskId, records: [record] };
    if (versionSelect && versionSelect.value) body.version = parseInt(versionSelect.value, 10);
    best.hidden = false;
    best.textContent = "Classifying…";
    return window.Vize.api("POST", classifyUrl, body).then(show, function () {
      fail("Could not reach the server.");
    });
  }

  function onFile(file) {
    if (!file) return;
    if (["image/jpeg", "image/png", "image/webp"].indexOf(file.type) < 0) {
      reset("");
      return fail("Choose a JPEG, PNG or WebP image.");
    }
    if (file.size > maxBytes) {
      reset("");
      return fail("The image is larger than " + Math.round(maxBytes / 1048576) + " MB.");
    }
    var reader = new FileReader();
    reader.onload = function () {
      var dataUrl = String(reader.result);
      reset(dataUrl);
      classify({ _base64: dataUrl.slice(dataUrl.indexOf(",") + 1) });
    };
    reader.readAsDataURL(file);
  }

  fileInput.addEventListener("change", function () {
    onFile(fileInput.files[0]);
    fileInput.value = "";
  });
  window.Vize.dropArea(document.getElementById("preview-drop"), function (files) {
    onFile(files[0]);
  });
  urlForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var url = urlInput.value.trim();
    if (!url) return;
    reset(url);
    classify({ _url: url });
  });
})();
