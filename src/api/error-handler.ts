/**
 * Turns every error a route throws into the API's error body. Client mistakes keep their code and
 * message. Any other error is logged with the request id and the client gets a generic 500, so no
 * stack trace or internal detail reaches it.
 */

import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { inputErrorField, isInputError } from "../jobs/input-errors.ts";
import { StorageError } from "../storage/errors.ts";
import { API_ERRORS, ApiError, type ErrorBody, errorBody } from "./errors.ts";
import { DEFAULT_MAX_UPLOAD_PARTS } from "./upload.ts";

interface Mapped {
  status: number;
  body: ErrorBody;
  retryAfterSeconds?: number;
}

/** Fastify and @fastify/multipart error codes with a catalogue code of their own. */
const FRAMEWORK_CODES: Record<string, keyof typeof API_ERRORS> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_INVALID_MULTIPART_CONTENT_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_BODY_TOO_LARGE: "UPLOAD_TOO_LARGE",
  FST_REQ_FILE_TOO_LARGE: "UPLOAD_TOO_LARGE",
  FST_FILES_LIMIT: "TOO_MANY_PARTS",
  FST_PARTS_LIMIT: "TOO_MANY_PARTS",
  FST_FIELDS_LIMIT: "UPLOAD_TOO_LARGE",
};

/** Messages that replace the framework's own text, which names no limit and no fix. */
const FRAMEWORK_MESSAGES: Record<string, string> = {
  FST_PARTS_LIMIT: `The upload has more parts than the server accepts (PIFA_MAX_UPLOAD_PARTS, default ${DEFAULT_MAX_UPLOAD_PARTS}): send fewer checkpoint shards, or ask the operator to raise the limit.`,
  FST_FILES_LIMIT: `The upload has more file parts than the server accepts (PIFA_MAX_UPLOAD_PARTS, default ${DEFAULT_MAX_UPLOAD_PARTS}): send fewer checkpoint shards, or ask the operator to raise the limit.`,
  FST_ERR_CTP_INVALID_MEDIA_TYPE:
    "Unsupported Content-Type: send multipart/form-data to upload a checkpoint, or application/json for a job on a stored source.",
};

/**
 * Messages busboy (under @fastify/multipart) raises for a body that is not
 * valid multipart. They carry no status code, so they are matched by text.
 */
const MALFORMED_MULTIPART =
  /^(Multipart: |Unexpected end of (multipart|form) data|Malformed (part|content)|Part terminated early)/;

function fromStorageError(error: StorageError): Mapped | undefined {
  switch (error.code) {
    case "TOO_LARGE":
      return { status: 413, body: errorBody("UPLOAD_TOO_LARGE", error.message) };
    case "BODY_ABORTED":
      // The storage message names internal keys; the client needs the cause.
      return {
        status: 400,
        body: errorBody(
          "INVALID_REQUEST",
          "The request body ended before the upload was complete: resend the whole multipart body.",
        ),
      };
    case "INVALID_RANGE":
      return {
        status: 416,
        body: errorBody("RANGE_NOT_SATISFIABLE", API_ERRORS.RANGE_NOT_SATISFIABLE.message),
      };
    case "UNAVAILABLE":
      return {
        status: 503,
        body: errorBody("STORAGE_UNAVAILABLE", API_ERRORS.STORAGE_UNAVAILABLE.message),
      };
    default:
      return undefined;
  }
}

function isRedisUnavailable(error: Error): boolean {
  return (
    error.name === "MaxRetriesPerRequestError" ||
    /Connection is closed|ECONNREFUSED|Stream isn't writeable/.test(error.message)
  );
}

/** Maps a known error to its response, or returns undefined for an unexpected one. */
export function mapError(error: unknown): Mapped | undefined {
  if (error instanceof ApiError) {
    const mapped: Mapped = {
      status: error.status,
      body: errorBody(error.code, error.message, error.field),
    };
    if (error.retryAfterSeconds !== undefined) mapped.retryAfterSeconds = error.retryAfterSeconds;
    return mapped;
  }
  if (isInputError(error)) {
    return {
      status: error.status,
      body: errorBody(error.code, error.message, inputErrorField(error)),
    };
  }
  if (error instanceof StorageError) {
    return fromStorageError(error);
  }
  if (!(error instanceof Error)) return undefined;
  if (MALFORMED_MULTIPART.test(error.message)) {
    return {
      status: 400,
      body: errorBody(
        "INVALID_REQUEST",
        `Malformed multipart body (${error.message}): send multipart/form-data with the boundary from the Content-Type header and complete parts.`,
      ),
    };
  }
  if (isRedisUnavailable(error)) {
    return {
      status: 503,
      body: errorBody("REDIS_UNAVAILABLE", API_ERRORS.REDIS_UNAVAILABLE.message),
    };
  }
  const framework = error as FastifyError & { validationContext?: string };
  if (framework.validation && framework.validation.length > 0) {
    const issue = framework.validation[0];
    const path = issue.instancePath.replace(/^\//, "").replaceAll("/", ".");
    const field = [framework.validationContext, path].filter((part) => part).join(".");
    return {
      status: 400,
      body: errorBody("INVALID_REQUEST", `Invalid ${field}: ${issue.message}`, field),
    };
  }
  const status = framework.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = FRAMEWORK_CODES[framework.code] ?? "INVALID_REQUEST";
    if (error instanceof SyntaxError) {
      return {
        status,
        body: errorBody(
          code,
          `The JSON body is not valid JSON (${error.message}): send one JSON object, such as {"source":"models/llama","options":{"method":"pifa","density":0.5}}.`,
        ),
      };
    }
    return { status, body: errorBody(code, FRAMEWORK_MESSAGES[framework.code] ?? error.message) };
  }
  return undefined;
}

/** Sends the error body for `error`; unexpected errors are logged and become a generic 500. */
export function sendError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  const mapped = mapError(error);
  if (mapped) {
    if (mapped.status >= 500)
      request.log.warn({ err: error }, "Request failed: a backend is unavailable");
    if (mapped.retryAfterSeconds !== undefined)
      reply.header("retry-after", String(mapped.retryAfterSeconds));
    return reply.code(mapped.status).send(mapped.body);
  }
  request.log.error({ err: error }, "Request failed with an unexpected error");
  const message = `Internal server error. Report request id ${request.id} to the operator.`;
  return reply.code(500).send(errorBody("INTERNAL_ERROR", message));
}

export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => sendError(error, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const message = `No route matches ${request.method} ${request.url.split("?")[0]}: see /openapi.yaml for the routes.`;
    return reply.code(404).send(errorBody("ROUTE_NOT_FOUND", message));
  });
}
