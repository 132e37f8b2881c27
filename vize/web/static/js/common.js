/* Shared helpers: API calls with the session's CSRF token, copy buttons, confirmations,
   and re-rendering parts of the page from the server (no client-side templates). */
"use strict";

window.Vize = (function () {
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function parseJson(text) {
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  /* Calls the API with the session cookie; resolves to {ok, status, data}, never rejects
     on an HTTP error (only on a network failure). */
  function api(method, url, body) {
    var init = {
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.text().then(function (text) {
        return { ok: response.ok, status: response.status, data: parseJson(text) };
      });
    });
  }

  function errorText(result) {
    if (result && result.data && result.data.detail) return result.data.detail;
    if (result && result.status === 404) return "This feature is not available on the server.";
    return "The server answered " + (result ? result.status : "nothing") + ".";
  }

  /* Fetch the current page again and swap the elements with these ids. */
  function refresh(ids) {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var fresh = doc.getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) old.replaceWith(fresh);
        });
      });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    var ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function onCopyClick(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) return;
    var text = "value" in target && target.tagName !== "CODE" ? target.value : target.textContent;
    var label = button.textContent;
    copyText(text).then(
      function () { button.textContent = "Copied!"; },
      function () {
        button.textContent = "Press Ctrl+C";
        if (target.select) target.select();
      }
    ).then(function () {
      setTimeout(function () { button.textContent = label; }, 1600);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) onCopyClick(button);
  });

  /* A select marked data-autosubmit (the header's workspace switcher) submits its form on
     change (inline handlers are not allowed by the page's CSP). */
  document.addEventListener("change", function (event) {
    var select = event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.submit();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });

  function formatPct(p) {
    return (Math.round(p * 1000) / 10).toFixed(1) + "%";
  }

  /* Wire a drop area to a callback receiving the dropped File objects. */
  function dropArea(zone, onFiles) {
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function (event) {
        event.preventDefault();
        if (type === "dragleave" && zone.contains(event.relatedTarget)) return;
        zone.classList.remove("dragging");
      });
    });
    zone.addEventListener("drop", function (event) {
      var files = event.dataTransfer ? Array.from(event.dataTransfer.files) : [];
      if (files.length) onFiles(files);
    });
  }

  return {
    api: api, csrfToken: csrfToken, errorText: errorText, refresh: refresh,
    parseJson: parseJson, formatPct: formatPct, dropArea: dropArea,
  };
})();
