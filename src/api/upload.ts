/**
 * Receiving a multipart job submission. Every file part streams straight into storage under a key
 * the service generates (`jobs/<id>/inputs/...`). Client file names pass the checkpoint module's
 * shard-name check and are recorded only as the shard names the index refers to.
 */

import { Readable } from "node:stream";
import type { Multipart, MultipartValue } from "@fastify/multipart";
import type { FastifyRequest } from "fastify";
import { checkShardName } from "../checkpoint/names.ts";
import { SAFETENSORS_FILE_NAME, SAFETENSORS_INDEX_NAME } from "../checkpoint/shard-index.ts";
import { type CompressionOptions, parseCompressionOptions } from "../compression/options.ts";
import type { JobInputs, StoredInput } from "../jobs/model.ts";
import { isStorageError } from "../storage/errors.ts";
import type { Storage } from "../storage/types.ts";
import { ApiError } from "./errors.ts";
import { quotaExceeded } from "./limits.ts";

/** Parts that carry one file each, with the file name their storage key ends in. */
const SINGLE_FILE_PARTS = {
  index: "index.json",
  config: "config.json",
  calibration: "calibration.json",
  evaluation: "evaluation.json",
} as const;

type SingleFilePart = keyof typeof SINGLE_FILE_PARTS;

const ACCEPTED_PARTS = ["options", "checkpoint", ...Object.keys(SINGLE_FILE_PARTS)];

/** Default maximum multipart parts of one upload. Real checkpoints have a few hundred shards at most. */
export const DEFAULT_MAX_UPLOAD_PARTS = 256;

/** Largest `options` part; real options are a few hundred bytes. */
export const MAX_OPTIONS_BYTES = 64 * 1024;

/** Parses the `options` part (JSON text) with the shared compression options schema. */
export function parseOptionsText(text: string): CompressionOptions {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ApiError(
      "INVALID_OPTIONS",
      `options is not valid JSON (${(error as Error).message}): send a JSON object such as {"method":"pifa","density":0.5}`,
      "options",
    );
  }
  return validateOptions(value);
}

function validateOptions(value: unknown): CompressionOptions {
  const parsed = parseCompressionOptions(value);
  if (!parsed.ok) throw new ApiError("INVALID_OPTIONS", parsed.issue.message, parsed.issue.field);
  return parsed.options;
}

/**
 * Checks whether @fastify/multipart (10.x) has already parsed this field as JSON. It parses every
 * field whose Content-Type starts with `application/json` (lowercased by busboy, parameters
 * dropped) and then sets its mimetype to exactly `application/json`.
 */
function isParsedJson(field: MultipartValue): boolean {
  return field.mimetype === "application/json";
}

/** Reads the `options` part, sent as a text field, an `application/json` field or a file. */
async function readOptionsPart(part: Multipart): Promise<CompressionOptions> {
  if (part.type === "field" && isParsedJson(part)) return validateOptions(part.value);
  return parseOptionsText(await readSmallPart(part, MAX_OPTIONS_BYTES));
}

/**
 * Converts the error @fastify/multipart raises, once the body has ended, for an `application/json`
 * field it could not parse. The plugin drops that field without passing it on, so the error
 * cannot name it.
 */
function invalidJsonFieldError(error: unknown): ApiError | undefined {
  const isInvalidJsonField =
    error instanceof Error && "code" in error && error.code === "FST_INVALID_JSON_FIELD_ERROR";
  if (!isInvalidJsonField) return undefined;
  return new ApiError(
    "INVALID_REQUEST",
    `a multipart field sent as application/json is not valid JSON, contains a "__proto__" or "constructor.prototype" key, or exceeds ${MAX_OPTIONS_BYTES} bytes: send the options part as a JSON object such as {"method":"pifa","density":0.5}, and files as file parts`,
  );
}

/**
 * Returns the bytes to store for a file sent as a field. NOTE: an `application/json` field arrives
 * parsed, so it is stored re-serialized, and its whitespace and number spelling (and so its size
 * and SHA-256) can differ from what the client sent.
 */
function fieldBytes(field: MultipartValue): Buffer {
  return Buffer.from(isParsedJson(field) ? JSON.stringify(field.value) : String(field.value));
}

async function readSmallPart(part: Multipart, maxBytes: number): Promise<string> {
  if (part.type === "field") {
    if (part.valueTruncated) {
      throw new ApiError(
        "INVALID_OPTIONS",
        `the ${part.fieldname} part exceeds ${maxBytes} bytes`,
        part.fieldname,
      );
    }
    return String(part.value);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of part.file) {
    size += chunk.length;
    if (size > maxBytes) {
      part.file.resume();
      throw new ApiError(
        "INVALID_OPTIONS",
        `the ${part.fieldname} part exceeds ${maxBytes} bytes`,
        part.fieldname,
      );
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Size limits of one upload. */
export interface UploadBudget {
  /** Maximum total bytes of all parts; more gets 413 `UPLOAD_TOO_LARGE`. */
  maxUploadBytes: number;
  /** Tenant whose storage quota the upload counts against. */
  tenant: string;
  /** Tenant's storage quota in bytes, 0 for none. */
  quotaBytes: number;
  /** Bytes left of the quota when the upload started; more gets 429 `STORAGE_QUOTA_EXCEEDED`. */
  quotaRemaining: number;
}

/** Collects the parts of one upload and stores their bodies as they arrive. */
class UploadReceiver {
  readonly #storage: Storage;
  readonly #prefix: string;
  readonly #budget: UploadBudget;
  #remainingBytes: number;
  #quotaRemaining: number;
  options: CompressionOptions | undefined;
  readonly checkpointParts: StoredInput[] = [];
  readonly singleParts = new Map<SingleFilePart, StoredInput>();

  constructor(storage: Storage, jobId: string, budget: UploadBudget) {
    this.#storage = storage;
    this.#prefix = `jobs/${jobId}/inputs/`;
    this.#budget = budget;
    this.#remainingBytes = budget.maxUploadBytes;
    this.#quotaRemaining = budget.quotaRemaining;
  }

  async receive(part: Multipart): Promise<void> {
    const name = part.fieldname;
    if (name === "options") {
      if (this.options !== undefined) throw duplicatePart(name);
      this.options = await readOptionsPart(part);
      return;
    }
    if (name === "checkpoint") {
      await this.#receiveCheckpoint(part);
      return;
    }
    if (name in SINGLE_FILE_PARTS) {
      const partName = name as SingleFilePart;
      if (this.singleParts.has(partName)) throw duplicatePart(name);
      const stored = await this.#store(part, `${this.#prefix}${SINGLE_FILE_PARTS[partName]}`);
      this.singleParts.set(partName, { name: SINGLE_FILE_PARTS[partName], ...stored });
      return;
    }
    if (part.type === "file") part.file.resume();
    throw new ApiError(
      "UNEXPECTED_PART",
      `unexpected part ${JSON.stringify(name)}: accepted parts are ${ACCEPTED_PARTS.join(", ")}`,
      name,
    );
  }

  async #receiveCheckpoint(part: Multipart): Promise<void> {
    if (part.type !== "file") {
      throw new ApiError(
        "INVALID_REQUEST",
        "the checkpoint part must be a file with a file name",
        "checkpoint",
      );
    }
    try {
      checkShardName(part.filename ?? "", "checkpoint part");
    } catch (error) {
      part.file.resume();
      throw error;
    }
    const key = `${this.#prefix}checkpoint-${this.checkpointParts.length}.safetensors`;
    const stored = await this.#store(part, key);
    this.checkpointParts.push({ name: part.filename, ...stored });
  }

  async #store(part: Multipart, key: string): Promise<Omit<StoredInput, "name">> {
    if (part.type === "field" && part.valueTruncated) {
      throw new ApiError(
        "UPLOAD_TOO_LARGE",
        `the ${part.fieldname} field exceeds ${MAX_OPTIONS_BYTES} bytes: send it as a file part`,
        part.fieldname,
      );
    }
    const body = part.type === "file" ? part.file : Readable.from([fieldBytes(part)]);
    // The running total is checked against the smaller of the upload limit and the quota left,
    // so the stream stops as soon as either is passed.
    const quotaBinds = this.#quotaRemaining < this.#remainingBytes;
    const maxBytes = quotaBinds ? this.#quotaRemaining : this.#remainingBytes;
    try {
      const result = await this.#storage.put(key, body, { maxBytes });
      this.#remainingBytes -= result.size;
      this.#quotaRemaining -= result.size;
      return { key, size: result.size, sha256: result.sha256 };
    } catch (error) {
      if (part.type === "file") part.file.resume();
      if (isStorageError(error, "TOO_LARGE")) {
        const { tenant, quotaBytes, quotaRemaining, maxUploadBytes } = this.#budget;
        if (quotaBinds) throw quotaExceeded(tenant, quotaBytes, quotaRemaining);
        throw new ApiError(
          "UPLOAD_TOO_LARGE",
          `the upload exceeds the server's limit of ${maxUploadBytes} bytes for all parts together (PIFA_MAX_UPLOAD_BYTES) while reading the ${part.fieldname} part: send a smaller checkpoint, or ask the operator to raise the limit`,
          part.fieldname,
        );
      }
      throw error;
    }
  }
}

function duplicatePart(name: string): ApiError {
  return new ApiError("UNEXPECTED_PART", `the ${name} part appears twice: send it once`, name);
}

/** Checkpoint inputs under their checkpoint names: one `model.safetensors`, or shards plus the index. */
function checkpointInputs(receiver: UploadReceiver): StoredInput[] {
  const parts = receiver.checkpointParts;
  if (parts.length === 0) {
    throw new ApiError(
      "MISSING_PART",
      "the checkpoint part is missing: attach model.safetensors or the shards",
      "checkpoint",
    );
  }
  const index = receiver.singleParts.get("index");
  if (index !== undefined) {
    // A checkpoint loader prefers model.safetensors, so the index would go unread.
    if (parts.some((part) => part.name === SAFETENSORS_FILE_NAME)) {
      throw new ApiError(
        "UNEXPECTED_PART",
        `the index part is for sharded checkpoints, but a checkpoint part is named ${SAFETENSORS_FILE_NAME} and the index would be ignored: drop the index part, or send the shards the index names`,
        "index",
      );
    }
    return [...parts, { ...index, name: SAFETENSORS_INDEX_NAME }];
  }
  if (parts.length > 1) {
    throw new ApiError(
      "MISSING_PART",
      `${parts.length} checkpoint parts were sent without an index part: attach ${SAFETENSORS_INDEX_NAME} as the "index" part`,
      "index",
    );
  }
  return [{ ...parts[0], name: SAFETENSORS_FILE_NAME }];
}

/** Default seconds a request body may send no bytes before its connection is closed. */
export const DEFAULT_UPLOAD_IDLE_SECONDS = 60;

/**
 * Closes the connection of an upload that sends no bytes for `idleMs`, so a stalled client cannot
 * hold a socket and a half-written object forever. The caller's error path then deletes what the
 * upload stored. Returns a function that stops the watch once the body has been read.
 */
export function closeWhenIdle(request: FastifyRequest, idleMs: number): () => void {
  const socket = request.raw.socket;
  const onTimeout = () => {
    request.log.warn(
      { idleMs, bytesRead: socket.bytesRead },
      "Request body sent no data within the idle timeout; closing its connection",
    );
    socket.destroy();
  };
  socket.setTimeout(idleMs, onTimeout);
  return () => {
    socket.setTimeout(0);
    socket.off("timeout", onTimeout);
  };
}

/**
 * Discards the rest of a request body that an error left unread. Without this the parser's
 * backpressure pauses the socket, and a keep-alive client could never send its next request on
 * that connection. A client that keeps sending past `maxBytes` gets its connection closed.
 */
export function discardRemainingBody(request: FastifyRequest, maxBytes: number): void {
  const raw = request.raw;
  if (raw.readableEnded || raw.destroyed) return;
  raw.unpipe();
  let discarded = 0;
  raw.on("data", (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > maxBytes) raw.destroy();
  });
  raw.resume();
}

/**
 * Reads every part of the request into storage and returns the validated options and the inputs.
 * On failure, objects already stored stay under `jobs/<id>/inputs/` for the caller to delete.
 */
export async function receiveUpload(
  request: FastifyRequest,
  storage: Storage,
  jobId: string,
  budget: UploadBudget,
): Promise<{ options: CompressionOptions; inputs: JobInputs }> {
  const receiver = new UploadReceiver(storage, jobId, budget);
  try {
    for await (const part of request.parts()) await receiver.receive(part);
  } catch (error) {
    throw invalidJsonFieldError(error) ?? error;
  }

  if (receiver.options === undefined) {
    throw new ApiError(
      "MISSING_PART",
      'the options part is missing: send it as JSON, e.g. {"method":"pifa","density":0.5}',
      "options",
    );
  }
  const config = receiver.singleParts.get("config");
  if (config === undefined) {
    throw new ApiError(
      "MISSING_PART",
      "the config part is missing: attach the model's config.json",
      "config",
    );
  }
  const inputs: JobInputs = { checkpoint: checkpointInputs(receiver), config };
  const calibration = receiver.singleParts.get("calibration");
  if (calibration) inputs.calibration = calibration;
  const evaluation = receiver.singleParts.get("evaluation");
  if (evaluation) inputs.evaluation = evaluation;
  return { options: receiver.options, inputs };
}
