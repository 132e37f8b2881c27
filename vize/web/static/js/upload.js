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
  var stats = fresh();

  function fresh() {
    return { total: 0, done: 0, ok: 0, dup: 0, moved: 0, asked: 0, failed: 0, closing: false, label: "" };
  }

  function busyNow() { return running > 0 || queue.length > 0; }

  /* Leaving mid-upload would drop the files not sent yet: the browser asks first. */
  window.addEventListener("beforeunload", function (event) {
    if (!busyNow()) return;
    event.preventDefault();
    event.returnValue = "";
  });

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
    stats[kind === "err" ? "failed" : kind] += 1;
    running -= 1;
    showSummary(false);
    next();
  }

  /* "Done" only once the counts and the grid show the new images too. */
  function showSummary(final) {
    var parts = [stats.ok + " uploaded"];
    if (stats.dup) parts.push(stats.dup + " already there");
    if (stats.asked) parts.push(stats.asked + " labelled otherwise");
    if (stats.failed) parts.push(stats.failed + " failed");
    var prefix = final ? "Done: " : "Uploading " + stats.done + " of " + stats.total + "… ";
    summary.textContent = prefix + parts.join(", ") + ".";
    summary.classList.toggle("error-text", final && stats.failed > 0);
  }

  function onLoad(item, xhr) {
    var data = window.Vize.parseJson(xhr.responseText) || {};
    if (xhr.status === 201) return finish(item, "ok", "Uploaded");
    if (xhr.status === 200 && data.code === "already_exists") {
      /* Say what happened: a label added, or nothing at all (already there as it is). */
      var added = (data.labels_added || []).length;
      return finish(item, "dup", added ? "Already uploaded; label added" : "Already uploaded with this label");
    }
    if (xhr.status === 409 && data.code === "label_conflict" && data.image_id) {
      return askMove(item, data);
    }
    finish(item, "err", data.detail || "Failed (HTTP " + xhr.status + ")");
  }

  /* The same picture is already in the task under another label: one label per image in a
     categorization task, so the page asks whether to move it. */
  function askMove(item, data) {
    var from = (data.conflicting_labels || []).map(function (l) { return l.name; }).join(", ");
    var to = data.label ? data.label.name : "";
    finish(item, "asked", "Already labelled “" + from + "”. Move from " + from + " to " + to + "?");
    item.view.li.classList.remove("asked");
    item.view.li.classList.add("dup");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-xs";
    button.textContent = "Move";
    button.setAttribute("aria-label", "Move " + item.file.name + " from " + from + " to " + to);
    button.addEventListener("click", function () {
      button.disabled = true;
      var target = "/v2/training-image/" + encodeURIComponent(data.image_id) + "/add-label/";
      window.Vize.api("POST", target, { label_id: data.label.id, move: true }).then(function (r) {
        if (!r.ok) { item.view.state.textContent = window.Vize.errorText(r); return; }
        item.view.state.textContent = "Moved from " + from + " to " + to + ".";
        window.Vize.refresh(["labels-panel", "image-grid"]);
      }, function () { button.disabled = false; item.view.state.textContent = "Network error"; });
    });
    item.view.state.append(" ", button);
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
      showLabel(batch.label);
      window.Vize.refresh(["labels-panel", "image-grid"]).then(last, last);
    }
  }

  /* The grid then shows the label just uploaded to (the address too, for a reload). */
  function showLabel(labelId) {
    var grid = document.getElementById("image-grid");
    if (!labelId || !grid || grid.getAttribute("data-label-id") === labelId) return;
    var address = new URL(window.location.href);
    address.searchParams.set("label", labelId);
    address.searchParams.delete("page");
    window.history.replaceState(null, "", address.toString());
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
      stats = fresh();
    }
    stats.label = labels[0];
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
