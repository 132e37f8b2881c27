/* The evaluation of a model version: the probability threshold (precision and recall per
   label recomputed from the stored test predictions), and the larger view of a
   misclassified test image with its actions. Events are delegated: the evaluation is
   re-rendered in place after a training. */
"use strict";

(function () {
  /* ---- threshold ---------------------------------------------------------------------- */
  function pct(x) { return x == null ? "—" : window.Vize.formatPct(x); }

  function counts(data, t) {
    var per = {};
    data.labels.forEach(function (l) { per[l.id] = { tp: 0, fp: 0, fn: 0 }; });
    var answered = 0;
    data.rows.forEach(function (row) {
      var predicted;
      if (data.kind === "multi_label") {
        predicted = Object.keys(row.s).filter(function (id) { return row.s[id] >= t; });
      } else {
        predicted = row.s >= t ? [row.p] : [];  /* below the threshold: "not sure" */
      }
      if (predicted.length) answered += 1;
      Object.keys(per).forEach(function (id) {
        var isTrue = row.t.indexOf(id) >= 0;
        var isPred = predicted.indexOf(id) >= 0;
        if (isTrue && isPred) per[id].tp += 1;
        else if (isPred) per[id].fp += 1;
        else if (isTrue) per[id].fn += 1;
      });
    });
    return { per: per, answered: answered };
  }

  function recompute(block) {
    var data = window.Vize.parseJson(block.getAttribute("data-thresholds"));
    var range = block.querySelector("#threshold-range");
    if (!data || !range) return;
    var t = Number(range.value) / 100;
    block.querySelector("#threshold-value").textContent = range.value + "%";
    var result = counts(data, t);
    Object.keys(result.per).forEach(function (id) {
      var c = result.per[id];
      var row = block.querySelector('tr[data-label-id="' + id + '"]');
      if (!row) return;
      var precision = c.tp + c.fp ? c.tp / (c.tp + c.fp) : null;
      var recall = c.tp + c.fn ? c.tp / (c.tp + c.fn) : null;
      var f1 = precision && recall ? (2 * precision * recall) / (precision + recall) : (precision === null || recall === null ? null : 0);
      row.querySelector('[data-col="precision"]').textContent = pct(precision);
      row.querySelector('[data-col="recall"]').textContent = pct(recall);
      row.querySelector('[data-col="f1"]').textContent = pct(f1);
    });
    var answered = block.querySelector("#threshold-answered");
    if (answered && data.kind !== "multi_label") {
      answered.textContent = result.answered + " of " + data.rows.length + " test images answered at this threshold.";
    }
  }

  document.addEventListener("input", function (event) {
    if (event.target.id !== "threshold-range") return;
    var block = event.target.closest("#per-label-block");
    if (block) recompute(block);
  });

  /* ---- misclassified image: larger view and actions ------------------------------------ */
  var current = null;  /* the card whose image the dialog shows */

  function imageUrl(id, suffix) {
    return "/v2/training-image/" + encodeURIComponent(id) + "/" + (suffix || "");
  }

  function dialog() { return document.getElementById("image-dialog"); }

  function say(text, isError) {
    var status = document.getElementById("dialog-status");
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function setPinned(button, pinned) {
    button.setAttribute("aria-pressed", pinned ? "true" : "false");
    button.textContent = pinned ? "Unpin test image" : "Pin as test image";
  }

  function open(button) {
    var box = dialog();
    if (!box) return;
    current = button.closest(".image-card");
    var id = current.getAttribute("data-image-id");
    box.querySelector("#dialog-title").textContent = button.getAttribute("data-file-name");
    var img = box.querySelector("#dialog-img");
    img.src = imageUrl(id, "file/");
    img.alt = "Test image " + button.getAttribute("data-file-name");
    var prob = button.getAttribute("data-prob");
    box.querySelector("#dialog-facts").textContent = "Labelled " + button.getAttribute("data-true") +
      ", predicted " + button.getAttribute("data-predicted") + (prob ? " (" + prob + ")" : "") + ".";
    var select = box.querySelector("#dialog-label");
    var predictedId = button.getAttribute("data-predicted-id");
    if (predictedId && select.querySelector('option[value="' + predictedId + '"]')) select.value = predictedId;
    setPinned(box.querySelector('[data-dialog-action="test"]'), button.getAttribute("data-test") === "true");
    say("");
    box.showModal();
  }

  function act(kind, button) {
    var id = current.getAttribute("data-image-id");
    var opener = current.querySelector("[data-open-image]");
    var request;
    if (kind === "relabel") {
      var select = dialog().querySelector("#dialog-label");
      var name = select.options[select.selectedIndex].textContent;
      request = window.Vize.api("POST", imageUrl(id, "add-label/"), { label_id: select.value, move: true })
        .then(function (r) { return [r, "Labelled “" + name + "” now. Train again to see the effect."]; });
    } else if (kind === "test") {
      var pinned = button.getAttribute("aria-pressed") !== "true";
      request = window.Vize.api("PATCH", imageUrl(id), { test_image: pinned }).then(function (r) {
        if (r.ok) { setPinned(button, pinned); opener.setAttribute("data-test", pinned ? "true" : "false"); }
        return [r, pinned ? "Pinned as a test image: never trained on." : "No longer a test image."];
      });
    } else {
      if (!window.confirm("Delete this image from your account?")) return;
      request = window.Vize.api("DELETE", imageUrl(id)).then(function (r) {
        if (r.ok) {
          dialog().close();
          current.classList.add("is-deleted");
          opener.disabled = true;
          current.querySelector(".small").textContent = "Deleted";
        }
        return [r, "Image deleted."];
      });
    }
    request.then(function (pair) {
      if (!pair[0].ok) return say(window.Vize.errorText(pair[0]), true);
      say(pair[1]);
    }, function () { say("Could not reach the server.", true); });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-image]");
    if (opener) return open(opener);
    var action = event.target.closest("[data-dialog-action]");
    if (action && current) act(action.getAttribute("data-dialog-action"), action);
  });
})();
