/* Swagger UI for /docs and /recognition/swagger/ (its files come from the installed
   swagger-ui-py package; nothing is loaded from another site). */
"use strict";

window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,  /* no badge fetched from the validator's site */
  });
});
