/**
 * The compression job as the service stores and serves it. The job record in Redis is the status
 * of record; BullMQ only schedules the work.
 */

import type { CompressionOptions } from "../compression/options.ts";

export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a job never leaves. */
export const FINAL_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

export function isFinalStatus(status: JobStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

export function isJobStatus(value: string): value is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(value);
}

/** Progress of a job; `stage` is `queued` before a worker picks it up. */
export interface JobProgress {
  stage: string;
  layersDone: number;
  layersTotal: number;
  /** `layersDone / layersTotal` in percent, 0 while the total is unknown and 100 once succeeded. */
  percent: number;
}

/** Error of a failed job, with a code from the API error catalogue or the checkpoint module. */
export interface JobError {
  code: string;
  message: string;
}

/** One published artifact file, stored under `jobs/<id>/artifacts/<name>`. */
export interface ArtifactInfo {
  name: string;
  size: number;
  sha256: string;
}

/** One input file of a job: the name the checkpoint layout gives it and the storage key it lives under. */
export interface StoredInput {
  name: string;
  key: string;
  size: number;
  /** Hex SHA-256, known for uploads and absent for files named by a `source` prefix. */
  sha256?: string;
}

/**
 * Storage locations of a job's inputs. Uploads live under `jobs/<id>/inputs/` with keys the
 * service generates, and a `source` job points at files that already were in storage.
 */
export interface JobInputs {
  /** `source` prefix for jobs submitted as JSON, absent for uploads. */
  source?: string;
  /** `model.safetensors`, or the shards plus `model.safetensors.index.json`, under their checkpoint names. */
  checkpoint: StoredInput[];
  config: StoredInput;
  calibration?: StoredInput;
  evaluation?: StoredInput;
}

/** The full job as stored in Redis. */
export interface JobRecord {
  id: string;
  status: JobStatus;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  options: CompressionOptions;
  progress: JobProgress;
  error?: JobError;
  artifacts?: ArtifactInfo[];
  /** Parsed `report.json` of a succeeded job. */
  report?: unknown;
  inputs: JobInputs;
  /** True once a client asked to cancel; the worker checks it after every layer. */
  cancelRequested: boolean;
  /** Attempts BullMQ started for this job, counting retries after infrastructure errors. */
  attempts: number;
  /** Tenant whose API key created the job; `default` in the single-user mode and for older records. */
  tenant: string;
}

/** The job as the HTTP API returns it. */
export interface JobView {
  id: string;
  tenant: string;
  status: JobStatus;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  options: CompressionOptions;
  progress: JobProgress;
  error?: JobError;
  artifacts?: ArtifactInfo[];
  report?: unknown;
}

/** Builds the API view of a record; list pages leave out the report to keep them small. */
export function toJobView(
  record: JobRecord,
  include: { report: boolean } = { report: true },
): JobView {
  const view: JobView = {
    id: record.id,
    tenant: record.tenant,
    status: record.status,
    createdAt: record.createdAt,
    startedAt: record.startedAt,
    finishedAt: record.finishedAt,
    options: record.options,
    progress: record.progress,
  };
  if (record.error !== undefined) view.error = record.error;
  if (record.artifacts !== undefined) view.artifacts = record.artifacts;
  if (include.report && record.report !== undefined) view.report = record.report;
  return view;
}

/** Builds the progress object, computing `percent` from the layer counts. */
export function progressOf(stage: string, layersDone: number, layersTotal: number): JobProgress {
  const percent = layersTotal > 0 ? Math.min(100, (100 * layersDone) / layersTotal) : 0;
  return { stage, layersDone, layersTotal, percent: Math.round(percent * 100) / 100 };
}

export const QUEUED_PROGRESS: JobProgress = progressOf("queued", 0, 0);

/** Storage prefix of everything a job owns: its uploaded inputs and its artifacts. */
export function jobStoragePrefix(id: string): string {
  return `jobs/${id}/`;
}

/**
 * Returns the bytes the job stores and counts against its tenant's quota: uploaded inputs and
 * artifacts. Files of a `source` prefix were in storage before the job and are not counted.
 */
export function storedBytesOf(record: JobRecord): number {
  const inputs = record.inputs;
  const uploaded =
    inputs.source === undefined
      ? [...inputs.checkpoint, inputs.config, inputs.calibration, inputs.evaluation].reduce(
          (sum, input) => sum + (input?.size ?? 0),
          0,
        )
      : 0;
  const artifacts = (record.artifacts ?? []).reduce((sum, artifact) => sum + artifact.size, 0);
  return uploaded + artifacts;
}

export function artifactKey(id: string, name: string): string {
  return `jobs/${id}/artifacts/${name}`;
}
