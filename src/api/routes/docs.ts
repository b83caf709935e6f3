/** `GET /openapi.yaml` (the description at the repository root) and the Swagger UI page at `/docs`. */

import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";

/** Path of openapi.yaml, two directories above this file's folder. */
export const OPENAPI_PATH = fileURLToPath(new URL("../../../openapi.yaml", import.meta.url));

export async function registerDocsRoutes(app: FastifyInstance): Promise<void> {
  const text = await readFile(OPENAPI_PATH, "utf8");

  app.get("/openapi.yaml", async (_request, reply) => {
    reply.header("content-type", "application/yaml; charset=utf-8");
    return text;
  });

  // Static mode serves the hand-written file instead of a description generated from the routes.
  await app.register(swagger, {
    mode: "static",
    specification: { path: OPENAPI_PATH, baseDir: "" },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
}
