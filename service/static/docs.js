// Starts the vendored Swagger UI on /docs (an inline script would break the page's CSP).
"use strict";
(function () {
  const element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // the default sends the spec to validator.swagger.io
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
