/* Drag-and-drop upload of many images to POST /v2/training-image/, a few at a time,
   each with its own progress bar and its own error. */
"use strict";

(function () {
  var card = document.getElementById("upload-card");
  if (!card) return;
  var PARALLEL = 3;
  var TYPES = ["image/jpeg", "image/png", "image/webp"];
  var maxBytes = parseInt(card.getAttribute("data-max-bytes"), 10) || 10485760;
  var url = card.getAttribute("data-upload-url");
  var list = document.getElementById("upload-list");
  var summary = document.getElementById("upload-summary");
  var input = document.getElementById("upload-files");
  var queue = [];
  var running = 0;
  var stats = { total: 0, done: 0, ok: 0, dup: 0, failed: 0, closing: false };

  function chosenLabels() {
    var select = document.getElementById("upload-label");
    if (select) return select.value ? [select.value] : [];
    return Array.from(card.querySelectorAll('input[name="labels"]:checked')).map(function (el) {
      return el.value;
    });
  }

  function row(file) {
    var li = document.createElement("li");
    li.className = "upload-item";
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    name.title = file.name;
    var bar = document.createElement("progress");
    bar.className = "bar";
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    var state = document.createElement("span");
    state.className = "state";
    state.textContent = "Waiting…";
    li.append(name, bar, state);
    list.appendChild(li);
    return { li: li, bar: bar, state: state };
  }

  function finish(item, kind, text) {
    item.view.li.classList.add(kind);
    item.view.state.textContent = text;
    if (kind === "err") item.view.bar.classList.add("bar-err");
    else item.view.bar.classList.add("bar-ok");
    item.view.bar.value = 100;
    stats.done += 1;
    stats[kind === "ok" ? "ok" : kind === "dup" ? "dup" : "failed"] += 1;
    running -= 1;
    showSummary(false);
    next();
  }

  /* "Done" only once the counts and the grid show the new images too. */
  function showSummary(final) {
    var parts = [stats.ok + " uploaded"];
    if (stats.dup) parts.push(stats.dup + " already there");
    if (stats.failed) parts.push(stats.failed + " failed");
    var prefix = final ? "Done: " : "Uploading " + stats.done + " of " + stats.total + "… ";
    summary.textContent = prefix + parts.join(", ") + ".";
    summary.classList.toggle("error-text", final && stats.failed > 0);
  }

  function onLoad(item, xhr) {
    var data = window.Vize.parseJson(xhr.responseText) || {};
    if (xhr.status === 201) return finish(item, "ok", "Uploaded");
    if (xhr.status === 200 && data.code === "already_exists") {
      return finish(item, "dup", "Already uploaded; label added");
    }
    finish(item, "err", data.detail || "Failed (HTTP " + xhr.status + ")");
  }

  function send(item) {
    var form = new FormData();
    form.append("img_path", item.file, item.file.name);
    item.labels.forEach(function (id) { form.append("labels", id); });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", window.Vize.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) item.view.bar.value = Math.round((95 * event.loaded) / event.total);
    });
    xhr.addEventListener("load", function () { onLoad(item, xhr); });
    xhr.addEventListener("error", function () { finish(item, "err", "Network error"); });
    item.view.state.textContent = "Uploading…";
    xhr.send(form);
  }

  function next() {
    while (running < PARALLEL && queue.length) {
      var item = queue.shift();
      running += 1;
      var problem = precheck(item.file);
      if (problem) finish(item, "err", problem);
      else send(item);
    }
    if (!running && !queue.length && stats.total && !stats.closing) {
      stats.closing = true;
      var batch = stats;
      var last = function () { if (batch === stats) showSummary(true); };
      window.Vize.refresh(["labels-panel", "image-grid"]).then(last, last);
    }
  }

  function precheck(file) {
    if (TYPES.indexOf(file.type) < 0) return "Not a JPEG, PNG or WebP image";
    if (file.size > maxBytes) return "Larger than " + Math.round(maxBytes / 1048576) + " MB";
    return "";
  }

  function add(files) {
    var labels = chosenLabels();
    if (!labels.length) {
      summary.textContent = "Choose the label of these images first.";
      summary.classList.add("error-text");
      return;
    }
    if (stats.closing || !stats.total) {
      list.textContent = "";
      stats = { total: 0, done: 0, ok: 0, dup: 0, failed: 0, closing: false };
    }
    files.forEach(function (file) {
      queue.push({ file: file, labels: labels, view: row(file) });
      stats.total += 1;
    });
    showSummary(false);
    next();
  }

  input.addEventListener("change", function () {
    add(Array.from(input.files));
    input.value = "";
  });
  window.Vize.dropArea(document.getElementById("dropzone"), add);
  /* A file dropped beside the zone must not make the browser leave the page. */
  ["dragover", "drop"].forEach(function (type) {
    window.addEventListener(type, function (event) {
      if (!event.target.closest || !event.target.closest(".dropzone")) event.preventDefault();
    });
  });
})();
