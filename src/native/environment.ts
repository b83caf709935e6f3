/**
 * Environment settings read before the addon loads: the BLAS thread count
 * and a guard against forcing an OpenBLAS core type the CPU cannot execute.
 */

import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { NativeError } from "./errors.ts";

/**
 * CPU flags, as /proc/cpuinfo names them, that the kernels of each forceable
 * OpenBLAS x86-64 core type use (core names from OpenBLAS 0.3.21
 * driver/others/dynamic.c, matched case-insensitively like OpenBLAS does).
 * Forcing a core whose flags are missing kills the process with SIGILL on the
 * first BLAS call. Core types not listed run on every x86-64 CPU, and OpenBLAS
 * ignores unknown names and detects the core itself.
 * NOTE: the lists are inferred from what each CPU generation introduced, not
 * checked against every kernel's instructions.
 */
const REQUIRED_CPU_FLAGS: Readonly<Record<string, readonly string[]>> = {
  sandybridge: ["avx"],
  haswell: ["avx2", "fma"],
  zen: ["avx2", "fma"],
  bulldozer: ["avx", "fma4"],
  piledriver: ["avx", "fma", "fma4"],
  steamroller: ["avx", "fma", "fma4"],
  excavator: ["avx", "fma", "fma4"],
  skylakex: ["avx512f", "avx512bw", "avx512dq", "avx512vl"],
  cooperlake: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"],
  sapphirerapids: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "amx_bf16"],
};

/** Reads the CPU feature flags, or returns undefined where /proc/cpuinfo is unavailable. */
export function readCpuFlags(path = "/proc/cpuinfo"): Set<string> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const line = text.split("\n").find((entry) => /^flags\s*:/.test(entry));
  if (line === undefined) return undefined;
  return new Set(
    line
      .slice(line.indexOf(":") + 1)
      .trim()
      .split(/\s+/),
  );
}

/**
 * Throws INVALID_CONFIGURATION when `coreType` (the OPENBLAS_CORETYPE value)
 * names a core whose instructions the CPU lacks. Without CPU flags (no
 * /proc/cpuinfo) nothing can be checked and the value is accepted.
 */
export function checkOpenblasCoreType(
  coreType: string | undefined,
  cpuFlags: ReadonlySet<string> | undefined,
): void {
  if (coreType === undefined || coreType === "" || cpuFlags === undefined) return;
  const required = REQUIRED_CPU_FLAGS[coreType.toLowerCase()];
  if (required === undefined) return;
  const missing = required.filter((flag) => !cpuFlags.has(flag));
  if (missing.length === 0) return;
  throw new NativeError(
    "INVALID_CONFIGURATION",
    "load",
    `OPENBLAS_CORETYPE=${coreType} needs CPU features this machine lacks (${missing.join(", ")}); ` +
      "OpenBLAS would crash with SIGILL. Unset OPENBLAS_CORETYPE to let OpenBLAS detect the core.",
  );
}

/**
 * Returns the BLAS thread count: PIFA_BLAS_THREADS when set, else
 * `os.availableParallelism()`. Throws INVALID_CONFIGURATION for a value that
 * is not a positive integer.
 */
export function configuredThreadCount(env: NodeJS.ProcessEnv): number {
  const raw = env.PIFA_BLAS_THREADS;
  if (raw === undefined || raw.trim() === "") return availableParallelism();
  const count = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(count) || count < 1) {
    throw new NativeError(
      "INVALID_CONFIGURATION",
      "load",
      `PIFA_BLAS_THREADS must be a positive integer, got '${raw}'; unset it to use all ` +
        `${availableParallelism()} available CPUs`,
    );
  }
  return count;
}
