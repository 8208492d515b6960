// The API documentation pages: this one page is /docs (Swagger UI) and /redoc (ReDoc),
// both served locally. It holds nothing of the API itself: the schema is fetched with
// the dashboard's token (none needed when api.docs is public), and Swagger UI sends the
// token with every request one tries.
"use strict";

const swagger = location.pathname === "/docs";
const other = document.getElementById("other");
[other.href, other.textContent] = swagger ? ["/redoc", "ReDoc"] : ["/docs", "Swagger UI"];

function script(src) {
  return new Promise((resolve, reject) => {
    const node = Object.assign(document.createElement("script"), { src, onload: resolve, onerror: reject });
    document.body.append(node);
  });
}

async function render(spec) {
  const element = document.getElementById("docs");
  if (swagger) {
    document.head.append(Object.assign(document.createElement("link"),
      { rel: "stylesheet", href: "/static/vendor/swagger-ui/swagger-ui.css" }));
    await script("/static/vendor/swagger-ui/swagger-ui-bundle.js");
    window.SwaggerUIBundle({
      spec, domNode: element, deepLinking: true,
      requestInterceptor: (request) => {
        if (Ombre.token) request.headers.Authorization = `Bearer ${Ombre.token}`;
        return request;
      },
    });
  } else {
    await script("/static/vendor/redoc/redoc.standalone.js");
    window.Redoc.init(spec, {}, element);
  }
}

async function load() {
  const response = await Ombre.api("/openapi.json");
  if (response.ok) render(await response.json());
  else document.getElementById("docs-error").textContent = (await response.json()).detail;
}

// A public schema needs no token: show it at once, and ask for one only if refused.
fetch("/openapi.json").then(async (response) => {
  if (response.ok && !localStorage.getItem("ombre-token") && !location.hash.includes("token=")) {
    document.getElementById("page").hidden = false;
    Ombre.translate();
    render(await response.json());
  } else {
    Ombre.init(load);
  }
});
