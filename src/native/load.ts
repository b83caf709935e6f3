/**
 * Loads build/Release/pifa_native.node on first use and applies the BLAS
 * thread count. Loading is lazy so that importing the wrapper never fails;
 * the first native call or blasInfo() reports a missing library instead.
 */

import { createRequire } from "node:module";
import type { Matrix } from "../linalg/matrix.ts";
import { checkOpenblasCoreType, configuredThreadCount, readCpuFlags } from "./environment.ts";
import { NativeError } from "./errors.ts";

/** Opaque prepared call: inputs already validated and copied (or borrowed) by the addon. */
export interface NativeJob {
  readonly __brand: "NativeJob";
}

export interface BlasInfo {
  /** `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... MAX_THREADS=64". */
  config: string;
  /** Kernel set OpenBLAS selected for this CPU, e.g. "Haswell". */
  corename: string;
  /** Threads OpenBLAS currently uses. */
  threads: number;
  /** Each BLAS/LAPACK symbol the addon calls, mapped to the library file it is bound to. */
  symbols: Record<string, string>;
}

/** Raw addon exports; src/native/index.ts is the typed, validated API. */
export interface NativeAddon {
  gemm(
    a: Matrix,
    b: Matrix,
    c: Matrix | null,
    transA: boolean,
    transB: boolean,
    alpha: number,
    beta: number,
  ): NativeJob;
  syrk(
    a: Matrix,
    c: Matrix | null,
    trans: boolean,
    alpha: number,
    beta: number,
    float64: boolean,
  ): NativeJob;
  trsm(
    a: Matrix,
    b: Matrix,
    left: boolean,
    lower: boolean,
    transA: boolean,
    unitDiagonal: boolean,
    alpha: number,
  ): NativeJob;
  cholesky(a: Matrix): NativeJob;
  eigh(a: Matrix): NativeJob;
  svd(a: Matrix): NativeJob;
  qr(a: Matrix, wantQ: boolean): NativeJob;
  qrPivoted(a: Matrix): NativeJob;
  luSolve(a: Matrix, b: Matrix): NativeJob;
  leastSquares(a: Matrix, b: Matrix): NativeJob;
  /** Computes a prepared job on the libuv thread pool; a job runs at most once. */
  run(job: NativeJob): Promise<unknown>;
  setThreads(count: number): void;
  getThreads(): number;
  blasInfo(): BlasInfo;
}

/** Path of the built addon, relative to this file. */
export const ADDON_PATH = "../../build/Release/pifa_native.node";

const INSTALL_HINT =
  "install the libraries with `apt-get install libopenblas-dev liblapacke-dev`, then run `npm rebuild`";

let loaded: { addon: NativeAddon } | { error: NativeError } | undefined;

/** Returns the addon, loading it on the first call; throws NativeError when it cannot load. */
export function loadNative(): NativeAddon {
  if (loaded === undefined) {
    try {
      loaded = { addon: loadAddon(ADDON_PATH, process.env) };
    } catch (error) {
      if (!(error instanceof NativeError)) throw error;
      // Retrying cannot help until the process restarts with a fixed setup.
      loaded = { error };
    }
  }
  if ("error" in loaded) throw loaded.error;
  return loaded.addon;
}

/**
 * Loads the addon at `path` (relative to this file) and sets its thread count
 * from `env`. Throws INVALID_CONFIGURATION for unsafe settings and
 * NATIVE_LIBRARY_MISSING when the addon or a library it links is missing.
 */
export function loadAddon(path: string, env: NodeJS.ProcessEnv): NativeAddon {
  // Both checks must run before OpenBLAS initializes inside require().
  checkOpenblasCoreType(env.OPENBLAS_CORETYPE, readCpuFlags());
  const threads = configuredThreadCount(env);

  const require = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = require(path) as NativeAddon;
  } catch (error) {
    throw describeLoadFailure(error, path);
  }
  addon.setThreads(threads);
  return addon;
}

function describeLoadFailure(error: unknown, path: string): NativeError {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  let text: string;
  if (code === "MODULE_NOT_FOUND") {
    text = `native addon ${path} is not built; ${INSTALL_HINT}`;
  } else if (/libopenblas|liblapacke|liblapack|libblas|libgfortran/.test(message)) {
    text = `native addon cannot load because a BLAS/LAPACK library is missing (${message}); ${INSTALL_HINT}`;
  } else {
    text = `native addon ${path} failed to load (${message}); rebuild it: ${INSTALL_HINT}`;
  }
  return new NativeError("NATIVE_LIBRARY_MISSING", "load", text, { cause: error });
}
