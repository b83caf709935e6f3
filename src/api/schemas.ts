/** Zod schemas of the request parts Fastify validates before a handler runs; see openapi.yaml. */

import { z } from "zod";
import { TENANT_NAME } from "../config.ts";
import { JOB_STATUSES } from "../jobs/model.ts";

/** Default and maximum page sizes of `GET /v1/jobs`. */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;

export const jobParamsSchema = z.object({ id: z.string() });

export const artifactParamsSchema = z.object({ id: z.string(), name: z.string() });

export const listQuerySchema = z
  .object({
    limit: z.coerce
      .number({ error: `limit must be an integer from 1 to ${MAX_PAGE_SIZE}` })
      .int(`limit must be an integer from 1 to ${MAX_PAGE_SIZE}`)
      .min(1, `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`)
      .max(MAX_PAGE_SIZE, `limit must be an integer from 1 to ${MAX_PAGE_SIZE}`)
      .default(DEFAULT_PAGE_SIZE),
    after: z.string().min(1).max(200).optional(),
    status: z
      .enum(JOB_STATUSES, { error: `status must be one of ${JOB_STATUSES.join(", ")}` })
      .optional(),
    tenant: z.string().regex(TENANT_NAME, "tenant must be a tenant name such as team-a").optional(),
  })
  .strict();

/** JSON submission of a checkpoint that already is in storage; `options` is checked separately. */
export const sourceBodySchema = z
  .object({
    source: z.string({ error: "source must be a storage prefix string" }).min(1).max(1000),
    options: z.unknown(),
  })
  .strict();

/** `Idempotency-Key` values: 1 to 255 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
