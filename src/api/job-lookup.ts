import { isJobId } from "../jobs/ids.ts";
import type { JobRecord } from "../jobs/model.ts";
import type { Principal } from "./auth.ts";
import type { ApiContext } from "./context.ts";
import { ApiError } from "./errors.ts";

/** True when `principal` may see and manage the job: its own tenant's jobs, or any as administrator. */
export function canAccess(principal: Principal, record: JobRecord): boolean {
  return principal.admin || record.tenant === principal.tenant;
}

/**
 * Loads a job by the id from a URL, throwing `JOB_NOT_FOUND` for a missing job, a malformed id,
 * or another tenant's job. Other tenants get the same 404 as for a missing job, so a job id
 * reveals nothing about whether the job exists.
 */
export async function loadJob(
  context: ApiContext,
  id: string,
  principal: Principal,
): Promise<JobRecord> {
  const record = isJobId(id) ? await context.store.get(id) : undefined;
  if (record === undefined || !canAccess(principal, record)) {
    throw new ApiError(
      "JOB_NOT_FOUND",
      `Job ${JSON.stringify(id)} was not found; it may have been deleted or expired.`,
    );
  }
  return record;
}
