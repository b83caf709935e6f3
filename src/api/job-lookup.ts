import { isJobId } from "../jobs/ids.ts";
import type { JobRecord } from "../jobs/model.ts";
import type { ApiContext } from "./context.ts";
import { ApiError } from "./errors.ts";

/** Loads a job by the id from a URL, throwing `JOB_NOT_FOUND` for a missing job or a malformed id. */
export async function loadJob(context: ApiContext, id: string): Promise<JobRecord> {
  const record = isJobId(id) ? await context.store.get(id) : undefined;
  if (record === undefined) {
    throw new ApiError(
      "JOB_NOT_FOUND",
      `Job ${JSON.stringify(id)} was not found; it may have been deleted or expired.`,
    );
  }
  return record;
}
