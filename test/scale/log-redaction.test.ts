/** The service logger's redact paths hide credentials in request headers and AWS keys. */

import { Writable } from "node:stream";
import { pino } from "pino";
import { expect, test } from "vitest";
import { LOG_REDACT_PATHS } from "../../src/cli/service.ts";

function logOnce(object: Record<string, unknown>): Record<string, unknown> {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString("utf8"));
      callback();
    },
  });
  const logger = pino({ redact: { paths: LOG_REDACT_PATHS, censor: "[redacted]" } }, destination);
  logger.info(object, "line");
  return JSON.parse(lines.join(""));
}

test("redaction hides credentials", () => {
  const line = logOnce({
    req: {
      method: "GET",
      headers: { authorization: "Bearer key-1234567890abcdef", "x-api-key": "key-abc", host: "h" },
    },
    err: { credentials: { accessKeyId: "AKIAEXAMPLE", secretAccessKey: "secret-example" } },
    storage: { sessionToken: "token-example" },
  });
  const text = JSON.stringify(line);
  expect(text).not.toContain("key-1234567890abcdef");
  expect(text).not.toContain("key-abc");
  expect(text).not.toContain("AKIAEXAMPLE");
  expect(text).not.toContain("secret-example");
  expect(text).not.toContain("token-example");
  const req = line.req as { method: string; headers: Record<string, string> };
  expect(req.headers.authorization).toBe("[redacted]");
  expect(req.headers.host).toBe("h");
  expect(req.method).toBe("GET");
});
