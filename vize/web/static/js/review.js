/* Review tab: keyboard-first review of the pending predictions.
   Arrows move, A/Enter accepts the predicted label, 1-9 accept as the n-th label (a
   correction), D/Delete dismisses, R retrains. Each action is one API call; the card
   leaves the grid at once and the next one becomes current, so the keys can be typed
   without waiting for the server (a failure puts the card back with the reason). */
"use strict";

(function () {
  var section = document.getElementById("review");
  if (!section) return;
  var taskId = section.getAttribute("data-task");
  var choices = JSON.parse(section.getAttribute("data-choices") || "[]");
  var grid = document.getElementById("review-grid");
  var status = document.getElementById("review-status");
  var pendingEl = document.getElementById("review-pending");
  var doneEl = document.getElementById("review-done");
  var current = null;

  function cards() {
    return grid ? Array.prototype.slice.call(grid.querySelectorAll(".review-card")) : [];
  }

  function select(card) {
    if (current) current.classList.remove("current");
    current = card || null;
    if (current) {
      current.classList.add("current");
      current.focus({ preventScroll: false });
    } else {
      document.getElementById("review-empty").hidden = false;
    }
  }

  function move(step) {
    var all = cards();
    if (!all.length) return;
    var i = all.indexOf(current);
    select(all[Math.max(0, Math.min(all.length - 1, i + step))]);
  }

  function count(el, delta) {
    el.textContent = String(Math.max(0, parseInt(el.textContent, 10) + delta));
  }

  function say(text) {
    status.textContent = text;
  }

  function act(card, kind, labelId) {
    if (!card) return;
    var id = card.getAttribute("data-id");
    if (kind === "accept" && !labelId) {
      labelId = card.getAttribute("data-label");
      if (!labelId) {
        say("The model answered “unknown”: press a number key to choose the label.");
        return;
      }
    }
    var next = card.nextElementSibling || card.previousElementSibling;
    var place = card.nextElementSibling;
    card.remove();
    select(next);
    count(pendingEl, -1);
    count(doneEl, 1);
    var call = kind === "dismiss"
      ? Vize.api("DELETE", "/v2/prediction/" + id + "/")
      : Vize.api("POST", "/v2/prediction/" + id + "/accept/", { label_id: labelId });
    call.then(function (result) {
      if (result.ok) return;
      grid.insertBefore(card, place && place.parentNode === grid ? place : null);
      count(pendingEl, 1);
      count(doneEl, -1);
      say("Could not save: " + Vize.errorText(result));
    });
  }

  function retrain() {
    Vize.api("POST", "/v2/task/" + taskId + "/train/").then(function (result) {
      if (result.ok) {
        window.location.href = "/tasks/" + taskId + "/training";
      } else {
        say("Training not started: " + Vize.errorText(result));
      }
    });
  }

  document.addEventListener("keydown", function (event) {
    var tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    if (key === "ArrowRight" || key === "j") move(1);
    else if (key === "ArrowLeft" || key === "k") move(-1);
    else if (key === "a" || key === "Enter") act(current, "accept");
    else if (key === "d" || key === "Delete" || key === "Backspace") act(current, "dismiss");
    else if (key === "r") retrain();
    else if (/^[1-9]$/.test(key) && choices[parseInt(key, 10) - 1]) {
      act(current, "accept", choices[parseInt(key, 10) - 1].id);
    } else return;
    event.preventDefault();
  });

  if (grid) {
    grid.addEventListener("click", function (event) {
      var card = event.target.closest(".review-card");
      if (!card) return;
      var button = event.target.closest("button[data-act]");
      if (button) act(card, button.getAttribute("data-act"));
      else if (event.target.tagName !== "SELECT" && event.target.tagName !== "OPTION") select(card);
    });
    grid.addEventListener("change", function (event) {
      if (event.target.classList.contains("review-correct") && event.target.value) {
        act(event.target.closest(".review-card"), "accept", event.target.value);
      }
    });
  }
  document.getElementById("retrain").addEventListener("click", retrain);
  select(cards()[0]);
})();
