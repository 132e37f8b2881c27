/* Preview: classify an image chosen, dropped, pasted or photographed (as _base64) or a URL
   (as _url) with POST /v2/classify, and show every label with its probability as a bar.
   Only the answer to the latest image is shown: an earlier, slower answer is dropped.
   The last tries stay in a strip, to compare. */
"use strict";

(function () {
  var card = document.getElementById("preview-card");
  if (!card) return;
  var TYPES = ["image/jpeg", "image/png", "image/webp"];
  var RECENT = 8;
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
  var recent = document.getElementById("recent");
  var recentTitle = document.getElementById("recent-title");
  var latest = 0;  /* the number of the latest request; answers to older ones are dropped */
  var stream = null;

  function reset(src) {
    empty.hidden = true;
    errorBox.hidden = true;
    best.hidden = true;
    bars.textContent = "";
    figure.hidden = !src;
    if (src) img.src = src; else img.removeAttribute("src");
  }

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    best.hidden = true;
    bars.textContent = "";
  }

  /* A picture that cannot be shown (dead URL, not an image) is hidden, not left broken. */
  img.addEventListener("error", function () { figure.hidden = true; });

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

  /* The reason in words: the API's detail, or what went wrong with a URL. */
  function problem(result, isUrl) {
    var text = window.Vize.errorText(result);
    return isUrl ? "Could not classify the image at this address: " + text : text;
  }

  function recordOf(result) {
    if (!result.ok) return { error: null };
    var record = (result.data.records || [])[0];
    if (!record) return { error: "The server returned no result." };
    if (record._status && record._status.code >= 400) return { error: record._status.text };
    return { record: record };
  }

  function render(entry) {
    reset(entry.src);
    if (entry.error) return fail(entry.error);
    var labels = entry.labels;
    var top = entry.top;
    best.textContent = "";
    best.append("Best label: ");
    var strong = document.createElement("strong");
    strong.id = "preview-best-label";
    strong.textContent = top.name;
    best.append(strong, " (" + window.Vize.formatPct(Number(top.prob) || 0) + ", model v" + entry.version + ")");
    best.hidden = false;
    labels.forEach(function (label) { bars.appendChild(bar(label, label.id === top.id)); });
  }

  function remember(entry) {
    var li = document.createElement("li");
    var button = document.createElement("button");
    button.type = "button";
    var thumb = document.createElement("img");
    thumb.alt = "";
    if (entry.src) thumb.src = entry.src;
    thumb.addEventListener("error", function () { thumb.removeAttribute("src"); });
    var caption = document.createElement("span");
    caption.className = "recent-label";
    caption.textContent = entry.error ? "Error" : entry.top.name;
    var figure = document.createElement("span");
    figure.textContent = entry.error ? "" : window.Vize.formatPct(Number(entry.top.prob) || 0);
    button.setAttribute("aria-label", "Show try: " + caption.textContent + " " + figure.textContent);
    button.append(thumb, caption, figure);
    button.addEventListener("click", function () {
      Array.from(recent.querySelectorAll("button")).forEach(function (b) { b.removeAttribute("aria-current"); });
      button.setAttribute("aria-current", "true");
      render(entry);
    });
    li.appendChild(button);
    Array.from(recent.querySelectorAll("button")).forEach(function (b) { b.removeAttribute("aria-current"); });
    button.setAttribute("aria-current", "true");
    recent.prepend(li);
    while (recent.children.length > RECENT) recent.lastElementChild.remove();
    recentTitle.hidden = false;
  }

  function show(number, src, result, isUrl) {
    if (number !== latest) return;  /* a newer image was chosen meanwhile */
    var got = recordOf(result);
    var entry = { src: src };
    if (got.error !== undefined) {
      entry.error = got.error || problem(result, isUrl);
    } else {
      var labels = (got.record.labels || []).slice().sort(function (a, b) { return b.prob - a.prob; });
      entry.labels = labels;
      entry.top = got.record.best_label || labels[0];
      entry.version = result.data.version;
      if (!entry.top) entry.error = "The model returned no label.";
    }
    render(entry);
    remember(entry);
    /* On a phone the result card sits below the form: bring it into view. */
    document.getElementById("result-title").scrollIntoView({ block: "nearest" });
  }

  function classify(record, src) {
    latest += 1;
    var number = latest;
    var body = { task_id: taskId, records: [record] };
    if (versionSelect && versionSelect.value) body.version = parseInt(versionSelect.value, 10);
    reset(src);
    best.hidden = false;
    best.textContent = "Classifying…";
    return window.Vize.api("POST", classifyUrl, body).then(function (result) {
      show(number, src, result, !!record._url);
    }, function () {
      if (number === latest) fail("Could not reach the server.");
    });
  }

  function refuse(text) {
    latest += 1;  /* an answer still on its way is for an image no longer shown */
    reset("");
    fail(text);
  }

  function onFile(file) {
    if (!file) return;
    if (TYPES.indexOf(file.type) < 0) return refuse("“" + (file.name || "This file") + "” is not a JPEG, PNG or WebP image.");
    if (file.size === 0) return refuse("“" + (file.name || "This file") + "” is empty (0 bytes): choose another image.");
    if (file.size > maxBytes) return refuse("The image is larger than " + Math.round(maxBytes / 1048576) + " MB.");
    var reader = new FileReader();
    reader.onload = function () {
      var dataUrl = String(reader.result);
      classify({ _base64: dataUrl.slice(dataUrl.indexOf(",") + 1) }, dataUrl);
    };
    reader.onerror = function () { refuse("The file could not be read."); };
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
    if (url) classify({ _url: url }, url);
  });

  /* Paste an image (a screenshot, an image copied in another tab). */
  document.addEventListener("paste", function (event) {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    var items = event.clipboardData ? Array.from(event.clipboardData.items) : [];
    var item = items.find(function (it) { return it.kind === "file" && it.type.indexOf("image/") === 0; });
    if (!item) return;
    event.preventDefault();
    onFile(item.getAsFile());
  });

  /* The camera: a live view, and a photo of it classified on "Take a photo". */
  var webcam = document.getElementById("webcam");
  var video = document.getElementById("webcam-video");
  var startButton = document.getElementById("webcam-start");

  function stopCamera() {
    if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
    stream = null;
    video.srcObject = null;
    webcam.hidden = true;
    startButton.hidden = false;
  }

  startButton.addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return refuse("This browser gives no camera access here (it needs HTTPS, or localhost).");
    }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      webcam.hidden = false;
      startButton.hidden = true;
    }, function (error) {
      refuse("The camera could not be opened: " + (error && error.message ? error.message : "permission refused") + ".");
    });
  });
  document.getElementById("webcam-stop").addEventListener("click", stopCamera);
  document.getElementById("webcam-snap").addEventListener("click", function () {
    if (!stream || !video.videoWidth) return;
    var canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    var dataUrl = canvas.toDataURL("image/jpeg", 0.92);
    classify({ _base64: dataUrl.slice(dataUrl.indexOf(",") + 1) }, dataUrl);
  });
  window.addEventListener("pagehide", stopCamera);

  /* The snippets' token: blurred until shown (Copy always copies it). */
  var toggle = document.getElementById("token-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var show = toggle.getAttribute("aria-pressed") !== "true";
      toggle.setAttribute("aria-pressed", show ? "true" : "false");
      toggle.textContent = show ? "Hide my token" : "Show my token";
      Array.from(document.querySelectorAll(".token-slot")).forEach(function (slot) {
        slot.classList.toggle("masked", !show);
      });
    });
  }
})();
