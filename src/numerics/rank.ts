/**
 * Ranks for a target density. Density is stored parameters over `m * n`;
 * integer indices (PIFA pivots) are not parameters.
 */

export type Representation = "low-rank" | "pifa";

export interface RankOptions {
  /** Round the rank down to a multiple of this (8 or 16 suit GPU kernels). */
  multiple?: number;
}

function checkInputs(m: number, n: number, density: number): void {
  if (!Number.isSafeInteger(m) || !Number.isSafeInteger(n) || m < 1 || n < 1) {
    throw new RangeError(`invalid layer shape [${m}, ${n}]: dimensions must be integers >= 1`);
  }
  if (!(density > 0 && density <= 1)) {
    throw new RangeError(`invalid density ${density}: expected a number in (0, 1]`);
  }
}

/**
 * Applies the clamp to `[1, min(m, n)]` and the optional multiple. Rounding
 * goes down so the density target is never exceeded, except that the rank
 * never drops below one multiple.
 */
function finishRank(rank: number, m: number, n: number, options: RankOptions): number {
  const maxRank = Math.min(m, n);
  let r = Math.max(1, Math.min(rank, maxRank));
  const k = options.multiple ?? 1;
  if (!Number.isSafeInteger(k) || k < 1) {
    throw new RangeError(`invalid rank multiple ${k}: expected an integer >= 1`);
  }
  if (k > 1) {
    r = Math.max(k, Math.floor(r / k) * k);
    if (r > maxRank) r = maxRank;
  }
  return r;
}

/** Stored values of a low-rank pair `A [m, r]`, `B [r, n]`. */
export function lowRankParams(m: number, n: number, r: number): number {
  return r * (m + n);
}

/** Stored values of PIFA: pivot rows `[r, n]` plus coefficients `[m - r, r]`. */
export function pifaParams(m: number, n: number, r: number): number {
  return r * n + (m - r) * r;
}

export function paramsFor(representation: Representation, m: number, n: number, r: number): number {
  return representation === "pifa" ? pifaParams(m, n, r) : lowRankParams(m, n, r);
}

/** Largest `r` with `r (m + n) <= d m n`. */
export function lowRankRank(
  m: number,
  n: number,
  density: number,
  options: RankOptions = {},
): number {
  checkInputs(m, n, density);
  const budget = density * m * n;
  let r = Math.floor(budget / (m + n));
  // Floating-point guard: step to the exact integer boundary.
  while (r > 0 && lowRankParams(m, n, r) > budget) r--;
  while (lowRankParams(m, n, r + 1) <= budget) r++;
  return finishRank(r, m, n, options);
}

/**
 * Largest `r` with `r (m + n) - r^2 <= d m n`, the smaller root of
 * `r^2 - (m + n) r + d m n = 0`. When the discriminant is negative every rank
 * up to `min(m, n)` fits.
 */
export function pifaRank(m: number, n: number, density: number, options: RankOptions = {}): number {
  checkInputs(m, n, density);
  const budget = density * m * n;
  const maxRank = Math.min(m, n);
  const discriminant = (m + n) ** 2 - 4 * budget;
  let r = discriminant < 0 ? maxRank : Math.floor((m + n - Math.sqrt(discriminant)) / 2);
  r = Math.min(r, maxRank);
  // The parameter count grows with r on [0, min(m, n)], so stepping is safe.
  while (r > 0 && pifaParams(m, n, r) > budget) r--;
  while (r < maxRank && pifaParams(m, n, r + 1) <= budget) r++;
  return finishRank(r, m, n, options);
}

export function rankFor(
  representation: Representation,
  m: number,
  n: number,
  density: number,
  options: RankOptions = {},
): number {
  return representation === "pifa"
    ? pifaRank(m, n, density, options)
    : lowRankRank(m, n, density, options);
}
