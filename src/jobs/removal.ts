/** Deleting jobs with everything they own, on request and when their retention ends. */

import type { Logger } from "pino";
import type { Storage } from "../storage/types.ts";
import { jobStoragePrefix } from "./model.ts";
import type { JobStore } from "./store.ts";

/**
 * Deletes the job's stored objects (uploaded inputs and artifacts under `jobs/<id>/`, never the
 * objects of a `source` prefix), then its record and events.
 *
 * Storage goes first, so a storage failure leaves the record in place and the caller can retry.
 * A worker that publishes an artifact during the delete finds the record gone at its next step,
 * and then deletes the prefix itself. The second pass here covers a publish that ended in between.
 */
export async function deleteJobEverywhere(
  store: JobStore,
  storage: Storage,
  id: string,
): Promise<void> {
  const prefix = jobStoragePrefix(id);
  await storage.deletePrefix(prefix);
  await store.delete(id);
  await storage.deletePrefix(prefix);
}

/** Deletes every finished job past the retention policy; returns how many were deleted. */
export async function sweepExpiredJobs(
  store: JobStore,
  storage: Storage,
  logger: Logger,
): Promise<number> {
  const ids = await store.expiredJobIds();
  let deleted = 0;
  for (const id of ids) {
    try {
      await deleteJobEverywhere(store, storage, id);
      deleted++;
    } catch (error) {
      logger.warn(
        { jobId: id, err: error },
        "Failed to delete an expired job; the next sweep retries it",
      );
    }
  }
  if (deleted > 0) logger.info({ deleted }, "Deleted finished jobs past their retention");
  return deleted;
}
