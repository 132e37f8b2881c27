/* Train button and live progress: POST /v2/task/{id}/train/, then GET .../training/ every
   second until the training succeeds or fails; the evaluation then re-renders in place. */
"use strict";

(function () {
  var card = document.getElementById("train-card");
  if (!card) return;
  var POLL_MS = 1000;
  var trainUrl = card.getAttribute("data-train-url");
  var statusUrl = card.getAttribute("data-status-url");
  var button = document.getElementById("train-btn");
  var box = document.getElementById("train-status");
  var stateBadge = document.getElementById("train-state");
  var message = document.getElementById("train-message");
  var percent = document.getElementById("train-percent");
  var bar = document.getElementById("train-progress");
  var errorBox = document.getElementById("train-error");
  var doneBox = document.getElementById("train-done");
  var timer = null;
  var networkFailures = 0;

  function show(el, text) {
    el.hidden = !text;
    el.textContent = text || "";
  }

  function busy(on) {
    if (!button) return;  // a viewer's page has no train button: progress only
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
    button.textContent = on ? "Training…" : "Train a new version";
  }

  function render(status) {
    box.hidden = false;
    var progress = Math.max(0, Math.min(1, Number(status.progress) || 0));
    stateBadge.textContent = status.state;
    stateBadge.className = "badge status-" + status.state;
    message.textContent = status.message || "";
    percent.textContent = Math.round(progress * 100) + "%";
    bar.value = Math.round(progress * 100);
  }

  function finished(status) {
    busy(false);
    if (status.state === "failed") {
      bar.classList.add("bar-err");
      show(errorBox, "Training failed: " + (status.error || status.message || "unknown error"));
      return window.Vize.refresh(["versions"]);
    }
    bar.classList.add("bar-ok");
    var version = status.model_version;
    var text = "Training finished" + (version != null ? ": version " + version + " is ready." : ".");
    /* Whether it was deployed, and why: the policy's decision, in words. */
    if (status.deploy && status.deploy.reason) text += " " + status.deploy.reason;
    show(doneBox, text);
    return window.Vize.refresh(["evaluation", "task-badges"]);
  }

  function poll() {
    window.Vize.api("GET", statusUrl).then(function (result) {
      networkFailures = 0;
      if (!result.ok) {
        busy(false);
        show(errorBox, window.Vize.errorText(result));
        return;
      }
      render(result.data);
      if (result.data.state === "succeeded" || result.data.state === "failed") {
        finished(result.data);
      } else {
        timer = setTimeout(poll, POLL_MS);
      }
    }, function () {
      networkFailures += 1;
      message.textContent = "Connection lost, retrying…";
      timer = setTimeout(poll, Math.min(10000, POLL_MS * (1 + networkFailures)));
    });
  }

  function start() {
    clearTimeout(timer);
    show(errorBox, "");
    show(doneBox, "");
    bar.classList.remove("bar-err", "bar-ok");
    busy(true);
    window.Vize.api("POST", trainUrl).then(function (result) {
      if (result.ok || (result.data && result.data.code === "training_in_progress")) {
        render({ state: "queued", progress: 0, message: "Waiting for a worker…" });
        window.Vize.refresh(["versions"]);  /* the new version appears as queued */
        poll();
        return;
      }
      busy(false);
      show(errorBox, window.Vize.errorText(result));
    }, function () {
      busy(false);
      show(errorBox, "Could not reach the server.");
    });
  }

  /* On load: the server rendered the latest training; keep following it if it still runs. */
  function resume() {
    var status = window.Vize.parseJson(card.getAttribute("data-initial"));
    if (!status) return;
    if (status.state === "queued" || status.state === "running") {
      busy(true);
      render(status);
      timer = setTimeout(poll, POLL_MS);
    } else if (status.state === "failed") {
      show(errorBox, "The last training failed: " + (status.error || "unknown error"));
    }
  }

  if (button) button.addEventListener("click", start);
  resume();
})();
