// The API docs page: Swagger UI over this server's own OpenAPI document.
// A separate file, not an inline script: the server's CSP allows scripts from 'self' only.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "/api/2.0/eventflow/openapi.json",
    dom_id: "#api",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
