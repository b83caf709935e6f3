/**
 * openapi.yaml against the running app: every registered route is described and every described
 * route exists, and real responses (status and JSON body) match the described schemas.
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parse } from "yaml";
import { fixtureParts, json, postJson, postUpload, waitForFinalStatus } from "./client.ts";
import { Harness } from "./harness.ts";
import { type Schema, SchemaValidator } from "./openapi-schema.ts";

const OPENAPI_FILE = join(import.meta.dirname, "..", "..", "openapi.yaml");
const DOCUMENTATION_PREFIX = "/docs";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;

let harness: Harness;
let url: string;
let document: Schema & { paths: Record<string, Record<string, Schema>> };
let validator: SchemaValidator;

beforeAll(async () => {
  harness = await Harness.start();
  url = await harness.startApi();
  harness.startWorker();
  document = parse(await readFile(OPENAPI_FILE, "utf8"));
  validator = new SchemaValidator(document);
});

afterAll(async () => {
  await harness.stop();
});

/**
 * Reads `printRoutes` output (one tree per method) into `METHOD /path/{param}` strings. Each tree
 * line is indented by four characters per level and shows the path segment added at that level.
 */
function registeredRoutes(): string[] {
  const routes: string[] = [];
  for (const method of METHODS) {
    const tree = harness.app.printRoutes({ commonPrefix: false, method });
    const stack: string[] = [];
    for (const line of tree.split("\n")) {
      const match = /^([│├└─\s]*)(\S.*) \(([A-Z, ]+)\)$/.exec(line);
      if (!match) continue;
      const depth = match[1].length / 4;
      stack.length = depth;
      stack.push(match[2]);
      const path = stack.join("").replace(/:([A-Za-z]+)/g, "{$1}");
      if (!path.startsWith(DOCUMENTATION_PREFIX)) routes.push(`${method} ${path}`);
    }
  }
  return routes.sort();
}

function describedRoutes(): string[] {
  const routes: string[] = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of METHODS) if (item[method.toLowerCase()]) routes.push(`${method} ${path}`);
  }
  return routes.sort();
}

/** Checks a response's status and JSON body against the operation for `method path`. */
async function expectDescribed(method: string, path: string, response: Response): Promise<unknown> {
  const operation = document.paths[path]?.[method.toLowerCase()] as
    | { responses: Record<string, Schema> }
    | undefined;
  expect(operation, `${method} ${path} is not in openapi.yaml`).toBeDefined();
  let described = operation?.responses[String(response.status)];
  expect(described, `${method} ${path} does not describe status ${response.status}`).toBeDefined();
  if (typeof described?.$ref === "string") described = validator.resolve(described.$ref);
  const content = described?.content as Record<string, { schema: Schema }> | undefined;
  const jsonContent = content?.["application/json"];
  if (!jsonContent || !response.headers.get("content-type")?.startsWith("application/json")) {
    await response.arrayBuffer();
    return undefined;
  }
  const body = await json(response);
  expect(validator.validate(body, jsonContent.schema)).toEqual([]);
  return body;
}

test("registered routes match the document", () => {
  expect(registeredRoutes()).toEqual(describedRoutes());
});

test("every $ref resolves", () => {
  const references = JSON.stringify(document).match(/"\$ref":"[^"]+"/g) ?? [];
  expect(references.length).toBeGreaterThan(10);
  for (const reference of references) {
    const target = reference.slice('"$ref":"'.length, -1);
    expect(() => validator.resolve(target)).not.toThrow();
  }
});

test("openapi.yaml is served as written", async () => {
  const response = await fetch(`${url}/openapi.yaml`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("application/yaml");
  expect(await response.text()).toBe(await readFile(OPENAPI_FILE, "utf8"));
});

test("docs page serves Swagger UI", async () => {
  const page = await fetch(`${url}/docs/`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("swagger");
  const spec = await json(await fetch(`${url}/docs/json`));
  expect(spec.info.title).toBe("pifa-service");
  expect(Object.keys(spec.paths)).toEqual(Object.keys(document.paths));
});

describe("responses match their schemas", () => {
  let jobId: string;

  beforeAll(async () => {
    const response = await postUpload(url, {
      options: { method: "pifa", density: 0.5 },
      files: await fixtureParts(),
    });
    const job = (await expectDescribed("POST", "/v1/jobs", response)) as { id: string };
    jobId = job.id;
    await waitForFinalStatus(url, jobId);
  });

  test("job routes", async () => {
    await expectDescribed("GET", "/v1/jobs", await fetch(`${url}/v1/jobs?limit=5`));
    await expectDescribed("GET", "/v1/jobs/{id}", await fetch(`${url}/v1/jobs/${jobId}`));
    await expectDescribed(
      "GET",
      "/v1/jobs/{id}/artifacts",
      await fetch(`${url}/v1/jobs/${jobId}/artifacts`),
    );
    await expectDescribed(
      "GET",
      "/v1/jobs/{id}/artifacts/{name}",
      await fetch(`${url}/v1/jobs/${jobId}/artifacts/report.json`, {
        headers: { range: "bytes=0-3" },
      }),
    );
    await expectDescribed(
      "POST",
      "/v1/jobs/{id}/cancel",
      await fetch(`${url}/v1/jobs/${jobId}/cancel`, { method: "POST" }),
    );
    await expectDescribed(
      "DELETE",
      "/v1/jobs/{id}",
      await fetch(`${url}/v1/jobs/${jobId}`, { method: "DELETE" }),
    );
  });

  test("error responses", async () => {
    const missing = "0190d0a0-0000-7000-8000-000000000000";
    await expectDescribed("GET", "/v1/jobs/{id}", await fetch(`${url}/v1/jobs/${missing}`));
    await expectDescribed("GET", "/v1/jobs", await fetch(`${url}/v1/jobs?limit=0`));
    await expectDescribed(
      "GET",
      "/v1/jobs/{id}/events",
      await fetch(`${url}/v1/jobs/${missing}/events`),
    );
    await expectDescribed(
      "POST",
      "/v1/jobs",
      await postJson(url, "/v1/jobs", { source: "nowhere", options: { method: "x" } }),
    );
    await expectDescribed(
      "POST",
      "/v1/jobs",
      await postJson(url, "/v1/jobs", {
        source: "nowhere",
        options: { method: "svd", density: 1 },
      }),
    );
  });

  test("operations routes", async () => {
    await expectDescribed("GET", "/livez", await fetch(`${url}/livez`));
    await expectDescribed("GET", "/readyz", await fetch(`${url}/readyz`));
    await expectDescribed("GET", "/metrics", await fetch(`${url}/metrics`));
  });
});

test("validator reports a wrong body", () => {
  const errors = validator.validate(
    { error: { code: 1, extra: true } },
    { $ref: "#/components/schemas/Error" },
  );
  expect(errors).toEqual([
    "$.error: missing required property message",
    "$.error.code: expected string, got integer",
    "$.error: unexpected property extra",
  ]);
});
