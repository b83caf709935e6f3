import { describe, expect, it } from "vitest";
import {
  lowRankParams,
  lowRankRank,
  pifaParams,
  pifaRank,
  rankFor,
} from "../../src/numerics/rank.ts";

const shapes: Array<[number, number]> = [
  [64, 64],
  [172, 64],
  [64, 172],
  [4096, 4096],
  [11008, 4096],
  [4096, 11008],
  [1, 1],
  [3, 1000],
];
const densities = [0.001, 0.05, 0.3, 0.5, 0.7, 0.9, 1];

describe("rank for density", () => {
  it("low-rank rank is the largest that fits the budget", () => {
    for (const [m, n] of shapes) {
      for (const d of densities) {
        const r = lowRankRank(m, n, d);
        expect(r).toBeGreaterThanOrEqual(1);
        expect(r).toBeLessThanOrEqual(Math.min(m, n));
        if (lowRankParams(m, n, 1) <= d * m * n) {
          expect(lowRankParams(m, n, r)).toBeLessThanOrEqual(d * m * n);
        }
        if (r < Math.min(m, n)) expect(lowRankParams(m, n, r + 1)).toBeGreaterThan(d * m * n);
      }
    }
  });

  it("PIFA rank is the largest that fits the budget", () => {
    for (const [m, n] of shapes) {
      for (const d of densities) {
        const r = pifaRank(m, n, d);
        expect(r).toBeGreaterThanOrEqual(1);
        expect(r).toBeLessThanOrEqual(Math.min(m, n));
        if (pifaParams(m, n, 1) <= d * m * n) {
          expect(pifaParams(m, n, r)).toBeLessThanOrEqual(d * m * n);
        }
        if (r < Math.min(m, n)) expect(pifaParams(m, n, r + 1)).toBeGreaterThan(d * m * n);
      }
    }
  });

  it("matches the closed forms on LLaMA-7B shapes", () => {
    expect(lowRankRank(4096, 4096, 0.5)).toBe(1024);
    // r (m + n) - r^2 <= d m n at d = 0.5 on a square layer: r = n (1 - sqrt(0.5)).
    expect(pifaRank(4096, 4096, 0.5)).toBe(Math.floor(4096 * (1 - Math.SQRT1_2)));
    expect(pifaRank(11008, 4096, 0.5)).toBe(
      Math.floor((15104 - Math.sqrt(15104 ** 2 - 2 * 11008 * 4096)) / 2),
    );
  });

  it("PIFA saves a quarter of the pair at r = n / 2", () => {
    expect(pifaParams(4096, 4096, 2048) / lowRankParams(4096, 4096, 2048)).toBe(0.75);
  });

  it("tiny densities clamp to rank 1", () => {
    expect(lowRankRank(4096, 4096, 1e-9)).toBe(1);
    expect(pifaRank(4096, 4096, 1e-9)).toBe(1);
  });

  it("full density reaches min(m, n)", () => {
    expect(pifaRank(172, 64, 1)).toBe(64);
    expect(lowRankRank(64, 64, 1)).toBe(32);
  });

  it("rank multiples round down and never exceed the density", () => {
    for (const k of [8, 16]) {
      for (const [m, n] of shapes) {
        for (const d of [0.3, 0.5, 0.7]) {
          const exact = pifaRank(m, n, d);
          const rounded = pifaRank(m, n, d, { multiple: k });
          if (exact >= k) {
            expect(rounded % k).toBe(0);
            expect(rounded).toBeLessThanOrEqual(exact);
            expect(exact - rounded).toBeLessThan(k);
          } else {
            expect(rounded).toBe(Math.min(k, m, n));
          }
        }
      }
    }
    expect(rankFor("low-rank", 64, 172, 0.5, { multiple: 16 })).toBe(16);
  });

  it("rejects invalid shapes, densities and multiples", () => {
    expect(() => pifaRank(0, 5, 0.5)).toThrow(RangeError);
    expect(() => pifaRank(5, 5, 0)).toThrow(/density/);
    expect(() => pifaRank(5, 5, 1.5)).toThrow(/density/);
    expect(() => pifaRank(5, 5, Number.NaN)).toThrow(/density/);
    expect(() => lowRankRank(5.5, 5, 0.5)).toThrow(/shape/);
    expect(() => lowRankRank(50, 50, 0.5, { multiple: 0 })).toThrow(/multiple/);
  });
});
