/**
 * Persistence of finished layers, so a retried job resumes after the last
 * layer it finished instead of starting over. The pipeline saves each
 * layer's encoded tensors before it reports progress for that layer, and on
 * a retry loads every layer it finds instead of computing it again.
 *
 * A saved layer is one self-describing blob:
 *
 *     u32 LE  length of the JSON part
 *     JSON    { report, tensors: [{ name, dtype, shape, byteLength }] }
 *     bytes   the tensors' bytes, concatenated in the listed order
 */

import { mkdir, open, readFile, rename } from "node:fs/promises";
import path from "node:path";
import type { LayerReport, OutputTensor } from "./layer.ts";

export interface EncodedLayer {
  tensors: OutputTensor[];
  report: LayerReport;
}

export interface LayerStore {
  /** Returns the saved layer, or undefined when it was never finished. */
  load(name: string): Promise<EncodedLayer | undefined>;
  /** Saves a finished layer; must be durable when the promise resolves. */
  save(name: string, layer: EncodedLayer): Promise<void>;
}

interface Manifest {
  report: LayerReport;
  tensors: Array<Omit<OutputTensor, "bytes"> & { byteLength: number }>;
}

export function serializeLayer(layer: EncodedLayer): Buffer {
  const manifest: Manifest = {
    report: layer.report,
    tensors: layer.tensors.map(({ name, dtype, shape, bytes }) => ({
      name,
      dtype,
      shape,
      byteLength: bytes.byteLength,
    })),
  };
  const json = Buffer.from(JSON.stringify(manifest), "utf8");
  const length = Buffer.alloc(4);
  length.writeUInt32LE(json.byteLength);
  return Buffer.concat([length, json, ...layer.tensors.map((tensor) => tensor.bytes)]);
}

/** Parses a saved layer; throws when the blob is truncated or inconsistent. */
export function deserializeLayer(blob: Buffer, expectedName: string): EncodedLayer {
  const fail = (why: string): never => {
    throw new Error(`saved layer ${expectedName} is unreadable (${why}): delete it to recompute`);
  };
  if (blob.byteLength < 4) fail("shorter than its length prefix");
  const jsonLength = blob.readUInt32LE(0);
  if (4 + jsonLength > blob.byteLength) fail("manifest runs past the end");
  let manifest: Manifest;
  try {
    manifest = JSON.parse(blob.subarray(4, 4 + jsonLength).toString("utf8")) as Manifest;
  } catch {
    return fail("manifest is not JSON");
  }
  if (manifest.report?.name !== expectedName) fail(`it holds ${manifest.report?.name}`);
  let offset = 4 + jsonLength;
  const tensors: OutputTensor[] = [];
  for (const tensor of manifest.tensors) {
    const end = offset + tensor.byteLength;
    if (end > blob.byteLength) fail(`tensor ${tensor.name} runs past the end`);
    // Copy so each tensor owns aligned memory for typed-array views.
    tensors.push({
      name: tensor.name,
      dtype: tensor.dtype,
      shape: tensor.shape,
      bytes: Buffer.from(blob.subarray(offset, end)),
    });
    offset = end;
  }
  if (offset !== blob.byteLength) fail("trailing bytes");
  return { tensors, report: manifest.report };
}

/** Keeps one file per layer under `directory`, written atomically (temp file, fsync, rename). */
export function directoryLayerStore(directory: string): LayerStore {
  const fileOf = (name: string) => path.join(directory, `${encodeURIComponent(name)}.layer`);
  return {
    async load(name) {
      const blob = await readFile(fileOf(name)).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      return blob === undefined ? undefined : deserializeLayer(blob, name);
    },
    async save(name, layer) {
      await mkdir(directory, { recursive: true });
      const target = fileOf(name);
      const temporary = `${target}.${process.pid}.tmp`;
      const handle = await open(temporary, "w");
      try {
        await handle.writeFile(serializeLayer(layer));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, target);
    },
  };
}
