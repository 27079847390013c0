// Starts Swagger UI on the document named by the page, from a file rather than an inline script
// (the page's Content-Security-Policy allows no inline script).
window.addEventListener("load", function () {
  var container = document.getElementById("swagger-ui-container");
  window.ui = SwaggerUIBundle({
    url: container.dataset.specUrl,
    dom_id: "#swagger-ui-container",
    validatorUrl: null,
  });
});
