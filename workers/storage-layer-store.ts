/**
 * A `LayerStore` in the job's storage, so a retried or handed-back job resumes after its finished
 * layers on any worker, not only on the machine that computed them.
 */

import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Logger } from "pino";
import type { Storage } from "../src/storage/types.ts";
import { deserializeLayer, type LayerStore, serializeLayer } from "./pipeline/layer-store.ts";

/** Storage prefix of a job's saved layers; `DELETE` removes it with the rest of `jobs/<id>/`. */
export function savedLayersPrefix(jobId: string): string {
  return `jobs/${jobId}/layers/`;
}

/**
 * Saves each layer under `jobs/<id>/layers/<sha256 of the tensor name>.layer`. The hash keeps keys
 * within storage limits whatever the tensor name, and the blob records the name, which `load`
 * checks. A blob that cannot be read is logged and treated as missing, so the layer is computed
 * again instead of failing every retry.
 */
export function storageLayerStore(storage: Storage, jobId: string, logger: Logger): LayerStore {
  const keyOf = (name: string) =>
    `${savedLayersPrefix(jobId)}${createHash("sha256").update(name).digest("hex")}.layer`;
  return {
    async load(name) {
      const key = keyOf(name);
      const info = await storage.head(key);
      if (info === undefined) return undefined;
      const blob = await storage.read(key, 0, info.size);
      try {
        return deserializeLayer(blob, name);
      } catch (error) {
        logger.warn(
          { err: error, key, layer: name },
          "Saved layer is unreadable; computing it again",
        );
        return undefined;
      }
    },
    async save(name, layer) {
      await storage.put(keyOf(name), Readable.from([serializeLayer(layer)]));
    },
  };
}
