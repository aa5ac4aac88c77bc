// /docs: Swagger UI over ./openapi.json, with the bearer token the upload page uses.
// The token lives in this tab's session storage (the same key as the upload page), is sent
// with the request for the document itself (which needs it when the server has tokens) and is
// pre-filled in Swagger UI's "Authorize" dialog for "Try it out".
(function () {
  "use strict";
  const TOKEN_KEY = "ingest.token";
  const form = document.getElementById("docs-token-form");
  const input = document.getElementById("docs-token");
  const status = document.getElementById("docs-status");

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function start() {
    const ui = window.SwaggerUIBundle({
      url: "openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      tryItOutEnabled: false,
      requestInterceptor(request) {
        if (token() && !request.headers.Authorization) {
          request.headers.Authorization = "Bearer " + token();
        }
        return request;
      },
      responseInterceptor(response) {
        if (response.url && response.url.endsWith("openapi.json") && response.status === 401) {
          status.textContent = "This server needs a token: enter it above to load the API description.";
        }
        return response;
      },
      onComplete() {
        if (token()) ui.preauthorizeApiKey("bearer", token());
      },
    });
    window.ingestDocs = ui;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  input.value = token();
  start();
})();
