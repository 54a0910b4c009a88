// Assembles dist/: our page and initialiser, Swagger UI's files from node_modules (with its
// licence) and the merged OpenAPI document (docs/api/openapi.json, made by
// `python -m shardz_devstack api-docs`). The gateway serves dist/ at api.<base>/docs/ and the
// document at api.<base>/openapi.json.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const swagger = join(here, "node_modules", "swagger-ui-dist");

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist);
for (const file of ["index.html", "init.js", "page.css"]) copyFileSync(join(here, file), join(dist, file));
for (const file of ["swagger-ui.css", "swagger-ui-bundle.js", "LICENSE"]) {
  copyFileSync(join(swagger, file), join(dist, file === "LICENSE" ? "LICENSE.swagger-ui" : file));
}
copyFileSync(join(here, "..", "..", "docs", "api", "openapi.json"), join(dist, "openapi.json"));
