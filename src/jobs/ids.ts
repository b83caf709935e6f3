import { randomBytes } from "node:crypto";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Creates a job id: a UUID version 7 (RFC 9562), whose first 48 bits are the Unix time in
 * milliseconds. Ids therefore sort by creation time as strings, which the job index uses for
 * cursor pagination. Ids made in the same millisecond sort in random order.
 */
export function newJobId(now: number = Date.now()): string {
  const bytes = randomBytes(16);
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = (bytes[6] & 0x0f) | 0x70; // version 7
  bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Returns true for strings in the form `newJobId` produces (lowercase UUID version 7). */
export function isJobId(value: string): boolean {
  return UUID_V7.test(value);
}
