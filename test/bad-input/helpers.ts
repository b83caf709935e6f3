/** Shared checks of the bad-input suites: the storage tree and liveness around each rejection. */

import { readdir } from "node:fs/promises";
import { join, relative } from "node:path";
import { expect } from "vitest";
import { json } from "../api/client.ts";

/** Lists every file under `root` as sorted relative paths, temporary upload files included. */
export async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(root, join(entry.parentPath, entry.name)))
    .sort();
}

/** Builds a safetensors file from header JSON text and data bytes. */
export function safetensors(header: string, data: Uint8Array = new Uint8Array(0)): Buffer {
  const json = Buffer.from(header, "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.byteLength));
  return Buffer.concat([length, json, data]);
}

/** Expects a JSON error body with `code` (and `field` when given) and the given status. */
export async function expectError(
  response: Response,
  status: number,
  code: string,
  field?: string,
): Promise<void> {
  const body = await json(response);
  expect(body.error.code, JSON.stringify(body)).toBe(code);
  expect(response.status).toBe(status);
  expect(body.error.message).toEqual(expect.any(String));
  expect(body.error.message).not.toMatch(/\n\s+at /);
  if (field !== undefined) expect(body.error.field).toBe(field);
}

/** Expects `/livez` to return 200, showing the service still serves after a rejection. */
export async function expectLive(url: string): Promise<void> {
  const response = await fetch(`${url}/livez`);
  expect(response.status).toBe(200);
}
