/** HTTP client helpers for API tests: multipart submissions and a server-sent events reader. */

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export const FIXTURE_DIR = join(import.meta.dirname, "..", "fixtures", "stories260K");

export interface FilePart {
  /** Multipart part name: checkpoint, index, config, calibration or evaluation. */
  part: string;
  filename: string;
  bytes: Uint8Array;
}

export interface UploadRequest {
  /** JSON text, or a value to serialize; undefined leaves the part out. */
  options?: unknown;
  files: FilePart[];
  headers?: Record<string, string>;
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Posts a multipart submission to `/v1/jobs`; the options part goes first. */
export async function postUpload(url: string, request: UploadRequest): Promise<Response> {
  const form = new FormData();
  if (request.options !== undefined) {
    const text =
      typeof request.options === "string" ? request.options : JSON.stringify(request.options);
    form.append("options", text);
  }
  for (const file of request.files) {
    form.append(file.part, new Blob([file.bytes]), file.filename);
  }
  return fetch(`${url}/v1/jobs`, { method: "POST", body: form, headers: request.headers });
}

/** The stories260K fixture as `checkpoint` and `config` parts. */
export async function fixtureParts(): Promise<FilePart[]> {
  return [
    {
      part: "checkpoint",
      filename: "model.safetensors",
      bytes: await readFile(join(FIXTURE_DIR, "model.safetensors")),
    },
    {
      part: "config",
      filename: "config.json",
      bytes: await readFile(join(FIXTURE_DIR, "config.json")),
    },
  ];
}

export async function postJson(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  return fetch(`${url}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...headers },
  });
}

export interface SseEvent {
  id?: string;
  event?: string;
  data: unknown;
}

export interface SseReadResult {
  events: SseEvent[];
  /** Comment lines (without the leading colon), such as heartbeats. */
  comments: string[];
  /** True when the server ended the stream, false when `onEvent` stopped reading. */
  ended: boolean;
}

function parseBlock(block: string, events: SseEvent[], comments: string[]): void {
  const event: SseEvent = { data: undefined };
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) comments.push(line.slice(1).trim());
    else if (line.startsWith("id: ")) event.id = line.slice(4);
    else if (line.startsWith("event: ")) event.event = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (data.length > 0) {
    event.data = JSON.parse(data.join("\n"));
    events.push(event);
  }
}

/**
 * Reads `/v1/jobs/{id}/events` until the server ends the stream, or until `onEvent` returns
 * "stop" (the connection is then aborted).
 */
export async function readEvents(
  url: string,
  jobId: string,
  options: {
    lastEventId?: string;
    onEvent?: (event: SseEvent) => "stop" | undefined | Promise<"stop" | undefined>;
    onComment?: (comment: string) => "stop" | undefined;
  } = {},
): Promise<SseReadResult> {
  const controller = new AbortController();
  const headers: Record<string, string> = { accept: "text/event-stream" };
  if (options.lastEventId) headers["last-event-id"] = options.lastEventId;
  const response = await fetch(`${url}/v1/jobs/${jobId}/events`, {
    headers,
    signal: controller.signal,
  });
  if (response.status !== 200 || response.body === null) {
    throw new Error(`events request failed with ${response.status}: ${await response.text()}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const events: SseEvent[] = [];
  const comments: string[] = [];
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { events, comments, ended: true };
    buffer += value;
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const before = events.length;
      const commentsBefore = comments.length;
      parseBlock(buffer.slice(0, end), events, comments);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
      let stop = false;
      if (events.length > before && options.onEvent)
        stop = (await options.onEvent(events[events.length - 1])) === "stop";
      if (comments.length > commentsBefore && options.onComment) {
        stop ||= options.onComment(comments[comments.length - 1]) === "stop";
      }
      if (stop) {
        controller.abort();
        await reader.cancel().catch(() => {});
        return { events, comments, ended: false };
      }
    }
  }
}

/** Reads events until the stream ends and returns the data of the last status event. */
export async function waitForFinalStatus(
  url: string,
  jobId: string,
): Promise<Record<string, unknown>> {
  const { events } = await readEvents(url, jobId);
  const statuses = events.filter((event) => event.event === "status");
  return statuses[statuses.length - 1]?.data as Record<string, unknown>;
}

/** A response body parsed as JSON, typed loosely so tests can assert on any field. */
// biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary fields of response bodies.
export type JsonBody = any;

export async function json(response: Response): Promise<JsonBody> {
  return response.json();
}
