import { describe, expect, test } from "vitest";
import { matchesIfNoneMatch, parseRange, rangeApplies } from "../../src/api/range.ts";

describe("parseRange", () => {
  test.each([
    [undefined, 100, { kind: "full" }],
    ["bytes=0-9", 100, { kind: "partial", range: { start: 0, end: 9 } }],
    ["bytes=90-", 100, { kind: "partial", range: { start: 90, end: 99 } }],
    ["bytes=90-500", 100, { kind: "partial", range: { start: 90, end: 99 } }],
    ["bytes=-10", 100, { kind: "partial", range: { start: 90, end: 99 } }],
    ["bytes=-500", 100, { kind: "partial", range: { start: 0, end: 99 } }],
    ["bytes=100-", 100, { kind: "unsatisfiable" }],
    ["bytes=100-200", 100, { kind: "unsatisfiable" }],
    ["bytes=-0", 100, { kind: "unsatisfiable" }],
    ["bytes=0-0", 0, { kind: "unsatisfiable" }],
    ["bytes=9-0", 100, { kind: "full" }],
    ["bytes=0-9,20-29", 100, { kind: "full" }],
    ["items=0-9", 100, { kind: "full" }],
    ["bytes=-", 100, { kind: "full" }],
    ["bytes=99999999999999999999-", 100, { kind: "full" }],
  ])("%s of %i bytes", (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});

describe("conditional headers", () => {
  const etag = '"abc"';

  test.each([
    [undefined, false],
    ['"abc"', true],
    ['W/"abc"', true],
    ['"x", "abc"', true],
    ["*", true],
    ['"abcd"', false],
  ])("If-None-Match %s matches: %s", (header, expected) => {
    expect(matchesIfNoneMatch(header, etag)).toBe(expected);
  });

  test.each([
    [undefined, true],
    ['"abc"', true],
    ['"other"', false],
    ["Wed, 21 Oct 2015 07:28:00 GMT", false],
  ])("If-Range %s applies: %s", (header, expected) => {
    expect(rangeApplies(header, etag)).toBe(expected);
  });
});
