/** Conversion between `JobRecord` and the flat string fields of its Redis hash. */

import type { CompressionOptions } from "../compression/options.ts";
import { isJobStatus, type JobInputs, type JobProgress, type JobRecord } from "./model.ts";

/** Field/value pairs for HSET, JSON-encoding the nested fields and leaving out absent ones. */
export function encodeRecordFields(fields: Partial<JobRecord>): string[] {
  const pairs: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    pairs.push(name, encodeField(name, value));
  }
  return pairs;
}

function encodeField(name: string, value: unknown): string {
  switch (name) {
    case "id":
    case "status":
    case "tenant":
      return String(value);
    case "cancelRequested":
      return value ? "1" : "0";
    case "attempts":
      return String(value);
    default:
      // Timestamps may be null before the job starts or finishes, so they are JSON too.
      return JSON.stringify(value);
  }
}

function parseJson<T>(hash: Record<string, string>, name: string): T | undefined {
  const text = hash[name];
  return text === undefined ? undefined : (JSON.parse(text) as T);
}

/** Tenant of records written before jobs had one. */
const DEFAULT_RECORD_TENANT = "default";

/** Rebuilds a record from HGETALL output; returns undefined for a missing or incomplete hash. */
export function decodeRecord(hash: Record<string, string>): JobRecord | undefined {
  const { id, status } = hash;
  if (id === undefined || status === undefined || !isJobStatus(status)) return undefined;
  const options = parseJson<CompressionOptions>(hash, "options");
  const progress = parseJson<JobProgress>(hash, "progress");
  const inputs = parseJson<JobInputs>(hash, "inputs");
  const createdAt = parseJson<string>(hash, "createdAt");
  if (
    options === undefined ||
    progress === undefined ||
    inputs === undefined ||
    createdAt === undefined
  ) {
    return undefined;
  }

  const record: JobRecord = {
    id,
    status,
    createdAt,
    startedAt: parseJson<string | null>(hash, "startedAt") ?? null,
    finishedAt: parseJson<string | null>(hash, "finishedAt") ?? null,
    options,
    progress,
    inputs,
    cancelRequested: hash.cancelRequested === "1",
    attempts: Number(hash.attempts ?? "0"),
    tenant: hash.tenant ?? DEFAULT_RECORD_TENANT,
  };

  const error = parseJson<JobRecord["error"]>(hash, "error");
  if (error) record.error = error;
  const artifacts = parseJson<JobRecord["artifacts"]>(hash, "artifacts");
  if (artifacts) record.artifacts = artifacts;
  const report = parseJson<unknown>(hash, "report");
  if (report !== undefined) record.report = report;
  return record;
}
