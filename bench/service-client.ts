/**
 * A minimal HTTP client of the pifa service for the end-to-end benchmark:
 * streaming multipart upload of a checkpoint directory, job polling,
 * readiness and deletion. Plain node:http, so the client adds no buffering
 * of its own: the file streams from disk in 1 MiB chunks.
 */

import { createReadStream } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

/** One multipart part: a text field or a file streamed from disk. */
interface Part {
  name: string;
  filename?: string;
  /** Absent for text fields, as curl -F and browsers send them. */
  contentType?: string;
  text?: string;
  file?: { path: string; size: number };
}

export interface JobView {
  id: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  progress: { stage: string; layersDone: number; layersTotal: number; percent: number };
  error?: { code: string; message: string };
  report?: {
    layers: Array<{ name: string; shape: [number, number]; seconds: number }>;
    totals: { layers: number; seconds: number; bytes_before: number; bytes_after: number };
  };
}

export interface Upload {
  job: JobView;
  /** Bytes of the request body, multipart framing included. */
  bodyBytes: number;
  /** Bytes of the checkpoint files in the body. */
  checkpointBytes: number;
  /** From the first byte sent to the 202 response, which comes after the API stored and validated the parts. */
  seconds: number;
}

function partHead(boundary: string, part: Part): Buffer {
  const filename = part.filename === undefined ? "" : `; filename="${part.filename}"`;
  const type = part.contentType === undefined ? "" : `Content-Type: ${part.contentType}\r\n`;
  return Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"${filename}\r\n${type}\r\n`,
  );
}

async function* multipartBody(boundary: string, parts: readonly Part[]): AsyncGenerator<Buffer> {
  for (const part of parts) {
    yield partHead(boundary, part);
    if (part.file !== undefined) {
      yield* createReadStream(part.file.path, { highWaterMark: 1 << 20 });
    } else {
      yield Buffer.from(part.text ?? "");
    }
    yield Buffer.from("\r\n");
  }
  yield Buffer.from(`--${boundary}--\r\n`);
}

function bodyLength(boundary: string, parts: readonly Part[]): number {
  let total = Buffer.byteLength(`--${boundary}--\r\n`);
  for (const part of parts) {
    total += partHead(boundary, part).length + 2;
    total += part.file?.size ?? Buffer.byteLength(part.text ?? "");
  }
  return total;
}

async function filePart(name: string, file: string, contentType: string): Promise<Part> {
  const { size } = await stat(file);
  return { name, filename: path.basename(file), contentType, file: { path: file, size } };
}

/** Builds the parts for a checkpoint directory: options first, then config.json, then the weights. */
async function checkpointParts(dir: string, options: object): Promise<Part[]> {
  const parts: Part[] = [
    { name: "options", contentType: "application/json", text: JSON.stringify(options) },
    await filePart("config", path.join(dir, "config.json"), "application/json"),
  ];
  const indexPath = path.join(dir, "model.safetensors.index.json");
  const sharded = await access(indexPath).then(
    () => true,
    () => false,
  );
  if (!sharded) {
    parts.push(
      await filePart("checkpoint", path.join(dir, "model.safetensors"), "application/octet-stream"),
    );
    return parts;
  }
  parts.push(await filePart("index", indexPath, "application/json"));
  const { weight_map: weightMap } = JSON.parse(await readFile(indexPath, "utf8")) as {
    weight_map: Record<string, string>;
  };
  for (const shard of [...new Set(Object.values(weightMap))].sort()) {
    parts.push(await filePart("checkpoint", path.join(dir, shard), "application/octet-stream"));
  }
  return parts;
}

function readBody(response: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    response.on("error", reject);
  });
}

/** Sends a request without a body and returns the status and parsed JSON (or text). */
export function requestJson(
  method: string,
  url: string,
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method }, async (response) => {
      try {
        const text = await readBody(response);
        const isJson = response.headers["content-type"]?.includes("json") ?? false;
        resolve({ status: response.statusCode ?? 0, body: isJson ? JSON.parse(text) : text });
      } catch (error) {
        reject(error);
      }
    });
    request.on("error", reject);
    request.end();
  });
}

/** Uploads a checkpoint directory as a new job and returns the queued job with the upload time. */
export async function uploadCheckpoint(
  baseUrl: string,
  dir: string,
  options: object,
): Promise<Upload> {
  const parts = await checkpointParts(dir, options);
  const boundary = `pifa-bench-${Date.now().toString(16)}`;
  const length = bodyLength(boundary, parts);
  const checkpointBytes = parts
    .filter((part) => part.name === "checkpoint")
    .reduce((sum, part) => sum + (part.file?.size ?? 0), 0);

  const started = performance.now();
  const request = http.request(`${baseUrl}/v1/jobs`, {
    method: "POST",
    headers: {
      "content-type": `multipart/form-data; boundary=${boundary}`,
      "content-length": String(length),
    },
  });
  const responded = new Promise<http.IncomingMessage>((resolve, reject) => {
    request.on("response", resolve);
    request.on("error", reject);
  });
  // The API may reject an invalid request before the body is sent, and then closes the
  // connection, so a failed send is reported only when no response came.
  const sent = pipeline(Readable.from(multipartBody(boundary, parts)), request);
  const sendFailure = sent.then(
    () => undefined,
    (error: unknown) => error,
  );
  const response = await responded;
  const text = await readBody(response);
  const seconds = (performance.now() - started) / 1000;
  const failure = await sendFailure;
  if (response.statusCode === 202 && failure !== undefined) throw failure;
  if (response.statusCode !== 202) {
    throw new Error(
      `upload of ${dir} failed with HTTP ${response.statusCode}: ${text.slice(0, 2000)}`,
    );
  }
  return { job: JSON.parse(text) as JobView, bodyBytes: length, checkpointBytes, seconds };
}

/** Polls `GET /readyz` until it returns 200; rejects after `timeoutMs`. */
export async function waitUntilReady(baseUrl: string, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "no response";
  while (performance.now() < deadline) {
    try {
      const { status, body } = await requestJson("GET", `${baseUrl}/readyz`);
      if (status === 200) return;
      last = `HTTP ${status} ${JSON.stringify(body)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${baseUrl}/readyz did not return 200 within ${timeoutMs} ms (last: ${last})`);
}

/**
 * Polls `GET /v1/jobs/:id` every `intervalMs` until the job succeeds, and
 * returns it with the time it was first seen succeeded. Rejects when the job
 * fails or is cancelled, or after `timeoutMs`.
 */
export async function waitForJob(
  baseUrl: string,
  id: string,
  options: { intervalMs?: number; timeoutMs?: number; onProgress?: (job: JobView) => void } = {},
): Promise<{ job: JobView; finishedAt: number }> {
  const intervalMs = options.intervalMs ?? 500;
  const deadline = performance.now() + (options.timeoutMs ?? 4 * 60 * 60 * 1000);
  let lastDone = -1;
  while (performance.now() < deadline) {
    const { status, body } = await requestJson("GET", `${baseUrl}/v1/jobs/${id}`);
    if (status !== 200) {
      throw new Error(`GET /v1/jobs/${id} returned HTTP ${status}: ${JSON.stringify(body)}`);
    }
    const job = body as JobView;
    if (job.status === "succeeded") return { job, finishedAt: performance.now() };
    if (job.status === "failed" || job.status === "cancelled") {
      throw new Error(`job ${id} ended ${job.status}: ${JSON.stringify(job.error ?? {})}`);
    }
    if (job.progress.layersDone !== lastDone) {
      lastDone = job.progress.layersDone;
      options.onProgress?.(job);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`job ${id} did not finish within the timeout`);
}

/** Deletes a job and every object it stored. */
export async function deleteJob(baseUrl: string, id: string): Promise<void> {
  const { status, body } = await requestJson("DELETE", `${baseUrl}/v1/jobs/${id}`);
  if (status !== 204) {
    throw new Error(`DELETE /v1/jobs/${id} returned HTTP ${status}: ${JSON.stringify(body)}`);
  }
}
