/**
 * Catalogue of the errors the HTTP API returns itself, each with its status and a default
 * message. Checkpoint and compression errors keep their own codes and statuses (see
 * `src/checkpoint/errors.ts` and `src/compression/errors.ts`). Every error body has the form
 * `{ "error": { "code", "message", "field"? } }`, and clients match on `code`.
 */

export const API_ERRORS = {
  INVALID_REQUEST: {
    status: 400,
    message: "The request is invalid: check it against openapi.yaml.",
  },
  INVALID_OPTIONS: { status: 400, message: "The compression options are invalid." },
  MISSING_PART: { status: 400, message: "A required multipart part is missing." },
  UNEXPECTED_PART: {
    status: 400,
    message: "The multipart body contains a part this route does not accept.",
  },
  INVALID_CURSOR: {
    status: 400,
    message:
      "The pagination cursor is invalid: pass the `nextCursor` of the previous page as `after`.",
  },
  INVALID_EVENT_ID: {
    status: 400,
    message:
      "Last-Event-ID is not an event id of this stream: reconnect without it to replay every event.",
  },
  INVALID_SOURCE: {
    status: 400,
    message: 'The source prefix is invalid: pass a storage directory key such as "models/llama".',
  },
  UNAUTHORIZED: {
    status: 401,
    message: "A valid API key is required: send `Authorization: Bearer <key>`.",
  },
  JOB_NOT_FOUND: {
    status: 404,
    message: "No job with this id exists; it may have been deleted or expired.",
  },
  ARTIFACT_NOT_FOUND: { status: 404, message: "The job has no artifact with this name." },
  ROUTE_NOT_FOUND: {
    status: 404,
    message: "No route matches this method and path: see /openapi.yaml.",
  },
  JOB_FINISHED: {
    status: 409,
    message: "The job has already finished, so it cannot be cancelled.",
  },
  JOB_NOT_RETRYABLE: {
    status: 409,
    message: "Only failed or cancelled jobs can be retried.",
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 409,
    message:
      "This Idempotency-Key was used for a different request: use a new key for a new request.",
  },
  UPLOAD_TOO_LARGE: { status: 413, message: "The upload exceeds the configured size limit." },
  TOO_MANY_PARTS: {
    status: 413,
    message: "The upload has more multipart parts than the configured limit.",
  },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message:
      "Send multipart/form-data with the checkpoint parts, or application/json with a source prefix.",
  },
  RANGE_NOT_SATISFIABLE: {
    status: 416,
    message: "The requested byte range lies outside the artifact.",
  },
  RATE_LIMITED: {
    status: 429,
    message: "Too many requests for this tenant: retry after the Retry-After seconds.",
  },
  TOO_MANY_ACTIVE_JOBS: {
    status: 429,
    message:
      "The tenant has the maximum number of queued and running jobs: wait for one to finish.",
  },
  STORAGE_QUOTA_EXCEEDED: {
    status: 429,
    message: "The tenant's storage quota is used up: delete finished jobs to free space.",
  },
  STORAGE_UNAVAILABLE: { status: 503, message: "Storage is unavailable; retry later." },
  REDIS_UNAVAILABLE: { status: 503, message: "Redis is unavailable; retry later." },
  INTERNAL_ERROR: { status: 500, message: "Internal server error." },
} as const satisfies Record<string, { status: number; message: string }>;

export type ApiErrorCode = keyof typeof API_ERRORS;

/** An error the API returns as is: `code` from the catalogue, a message, and the offending field. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  readonly code: ApiErrorCode;
  readonly status: number;
  readonly field: string | undefined;
  /** Seconds for the `Retry-After` header of a 429 response. */
  retryAfterSeconds: number | undefined;

  constructor(code: ApiErrorCode, message?: string, field?: string) {
    super(message ?? API_ERRORS[code].message);
    this.code = code;
    this.status = API_ERRORS[code].status;
    this.field = field;
  }

  /** Builds a 429 error whose response carries `Retry-After: <seconds>`. */
  static limited(code: ApiErrorCode, message: string, retryAfterSeconds: number): ApiError {
    const error = new ApiError(code, message);
    error.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterSeconds));
    return error;
  }
}

/** Body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

export function errorBody(code: string, message: string, field?: string): ErrorBody {
  return { error: field === undefined ? { code, message } : { code, message, field } };
}
