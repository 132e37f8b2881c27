/* The image grid of a label: move to another label / add or remove tags, pin as a test
   image, delete. Every action is one API call; the grid and the counts then re-render. */
"use strict";

(function () {
  function imageUrl(id, suffix) {
    return "/v2/training-image/" + encodeURIComponent(id) + "/" + (suffix || "");
  }

  function say(text, isError) {
    var status = document.getElementById("grid-status");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", !!isError);
  }

  function afterChange(message) {
    return window.Vize.refresh(["labels-panel", "image-grid"]).then(function () {
      say(message, false);
      if (document.activeElement === document.body) {
        var title = document.getElementById("grid-title");
        if (title) { title.setAttribute("tabindex", "-1"); title.focus(); }
      }
    });
  }

  function optionText(select) {
    var option = select.options[select.selectedIndex];
    return option ? option.textContent : "";
  }

  function call(card, method, url, body) {
    card.classList.add("busy");
    return window.Vize.api(method, url, body).then(function (result) {
      card.classList.remove("busy");
      if (!result.ok) throw new Error(window.Vize.errorText(result));
      return result;
    });
  }

  function move(card, select) {
    /* One call: in a categorization task "move" swaps the image's label for the new one. */
    var id = card.getAttribute("data-image-id");
    var name = optionText(select);
    return call(card, "POST", imageUrl(id, "add-label/"), { label_id: select.value, move: true })
      .then(function () { return afterChange("Image moved to “" + name + "”."); });
  }

  function tag(card, select) {
    var id = card.getAttribute("data-image-id");
    var name = optionText(select);
    return call(card, "POST", imageUrl(id, "add-label/"), { label_id: select.value })
      .then(function () { return afterChange("Tag “" + name + "” added."); });
  }

  function untag(card, button) {
    var id = card.getAttribute("data-image-id");
    var label = button.getAttribute("data-label");
    return call(card, "POST", imageUrl(id, "remove-label/"), { label_id: label })
      .then(function () { return afterChange("Tag removed."); });
  }

  function toggleTest(card, button) {
    var id = card.getAttribute("data-image-id");
    var pinned = button.getAttribute("aria-pressed") !== "true";
    return call(card, "PATCH", imageUrl(id), { test_image: pinned }).then(function () {
      button.setAttribute("aria-pressed", pinned ? "true" : "false");
      card.classList.toggle("is-test", pinned);
      say(pinned ? "Pinned as a test image: never trained on." : "No longer a test image.");
    });
  }

  function remove(card) {
    if (!window.confirm("Delete this image from your account?")) return Promise.resolve();
    var id = card.getAttribute("data-image-id");
    return call(card, "DELETE", imageUrl(id)).then(function () {
      return afterChange("Image deleted.");
    });
  }

  function fail(card) {
    return function (error) {
      card.classList.remove("busy");
      say(error.message || "The change failed.", true);
    };
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var card = button.closest(".image-card");
    var kind = button.getAttribute("data-action");
    var target = card.querySelector('[data-role="target"]');
    if ((kind === "move" || kind === "tag") && (!target || !target.value)) {
      say("Choose a label in the list first.", true);
      if (target) target.focus();
      return;
    }
    var job = kind === "move" ? move(card, target)
      : kind === "tag" ? tag(card, target)
      : kind === "test" ? toggleTest(card, button)
      : kind === "delete" ? remove(card)
      : kind === "untag" ? untag(card, button) : null;
    if (job) job.catch(fail(card));
  });
})();
