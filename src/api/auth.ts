/**
 * Bearer API keys and the tenant each one belongs to. Keys are kept only as SHA-256 digests, and
 * a presented key is compared against every configured digest with `crypto.timingSafeEqual`, so
 * neither the match position nor a shared prefix shows in the response time.
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Logger } from "pino";
import { errorBody } from "./errors.ts";

/** One configured key: its tenant, whether it is an administrator key, and its SHA-256 digest. */
export interface ApiKeyEntry {
  tenant: string;
  admin: boolean;
  sha256: Buffer;
}

/** The caller of a request. Administrators see and manage the jobs of every tenant. */
export interface Principal {
  tenant: string;
  admin: boolean;
}

/** Tenant of every job in the single-user mode without keys. */
export const DEFAULT_TENANT = "default";

declare module "fastify" {
  interface FastifyRequest {
    /** Caller of a `/v1/` request, set by the authentication hook. */
    principal: Principal | null;
  }
}

export function hashApiKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/** Checks presented bearer keys against the configured digests. */
export class ApiKeyChecker {
  readonly #entries: readonly ApiKeyEntry[];

  constructor(entries: readonly ApiKeyEntry[]) {
    this.#entries = entries;
  }

  /** False in the single-user mode, where no key is configured and requests need none. */
  get enabled(): boolean {
    return this.#entries.length > 0;
  }

  /**
   * Returns the principal of `presented`, or undefined when it matches no key. Every digest is
   * compared, also after a match, so the time taken does not depend on which entry matched.
   */
  authenticate(presented: string): Principal | undefined {
    const digest = hashApiKey(presented);
    let match: ApiKeyEntry | undefined;
    for (const entry of this.#entries) {
      const equal = timingSafeEqual(digest, entry.sha256);
      if (equal && match === undefined) match = entry;
    }
    return match && { tenant: match.tenant, admin: match.admin };
  }
}

const BEARER = /^Bearer[ \t]+([\x21-\x7e]+)[ \t]*$/i;

/**
 * Routes outside `/v1/` (health, metrics, openapi.yaml, docs) need no key. The check reads the
 * matched route's pattern rather than the raw URL, so percent-encoding or extra slashes in the
 * URL cannot reach a `/v1/` handler past it.
 */
function isProtected(request: FastifyRequest): boolean {
  return request.routeOptions.url?.startsWith("/v1/") ?? false;
}

function reject(reply: FastifyReply, message: string): FastifyReply {
  return reply
    .code(401)
    .header("www-authenticate", 'Bearer realm="pifa"')
    .send(errorBody("UNAUTHORIZED", message));
}

/**
 * Sets `request.principal` on every `/v1/` request, or responds with 401. Without configured keys every
 * request is the administrator of the `default` tenant, which is the single-user mode.
 */
export function registerAuthentication(app: FastifyInstance, checker: ApiKeyChecker): void {
  app.decorateRequest("principal", null);
  app.addHook("onRequest", async (request, reply) => {
    if (!isProtected(request)) return;
    if (!checker.enabled) {
      request.principal = { tenant: DEFAULT_TENANT, admin: true };
      return;
    }
    const header = request.headers.authorization;
    if (header === undefined) {
      return reject(
        reply,
        "The Authorization header is missing: send `Authorization: Bearer <key>`.",
      );
    }
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) {
      request.log.info("Request rejected: Authorization header is not a bearer token");
      return reject(
        reply,
        "The Authorization header must use the Bearer scheme: send `Authorization: Bearer <key>`.",
      );
    }
    const principal = checker.authenticate(token);
    if (principal === undefined) {
      request.log.info("Request rejected: invalid API key");
      return reject(
        reply,
        "The API key is invalid: send `Authorization: Bearer <key>` with a configured key.",
      );
    }
    request.principal = principal;
  });
}

/** The caller of a `/v1/` request; throws when the authentication hook did not run. */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) {
    throw new Error(
      `No principal on ${request.method} ${request.url}: the route is not under /v1/`,
    );
  }
  return request.principal;
}

/** True for `localhost` and for loopback IPv4 (127.0.0.0/8) and IPv6 (::1) addresses. */
export function isLoopbackHost(host: string): boolean {
  const address = host.replace(/^\[|\]$/g, "");
  if (address === "localhost") return true;
  if (isIP(address) === 4) return address.startsWith("127.");
  if (isIP(address) === 6) return address === "::1" || address.startsWith("::ffff:127.");
  return false;
}

/**
 * Logs a warning when the API listens on a non-loopback address without API keys, because then
 * anyone who can reach the port can read, submit and delete every job.
 */
export function warnIfOpenOnNetwork(host: string, checker: ApiKeyChecker, logger: Logger): void {
  if (checker.enabled || isLoopbackHost(host)) return;
  logger.warn(
    { host },
    "The API listens on a non-loopback address without API keys, so anyone who can reach it can read, submit and delete every job: set PIFA_API_KEYS (and PIFA_ADMIN_KEYS) or bind HOST to 127.0.0.1",
  );
}
