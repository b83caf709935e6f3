/**
 * Operation counts of the data-free PIFA layer path and a roofline estimate
 * of its time on one H100-class GPU. Nothing here runs on a GPU: the
 * estimates divide the counts by published peak rates.
 *
 * Peak rates are NVIDIA's datasheet figures for the H100 SXM5, dense (no
 * sparsity), as tabulated at https://glennklockwood.com/garden/processors/h100
 * and in HPC Tech's H100 product table.
 */

export type Precision = "float64" | "float32";

export interface GpuModel {
  name: string;
  /** FLOP/s of the FP64 tensor cores (DGEMM-class work). */
  float64: number;
  /** FLOP/s of plain FP32 (no TF32, which would round the inputs to 10-bit mantissas). */
  float32: number;
  /** HBM bytes/s. */
  memoryBandwidth: number;
  /** Host-to-device bytes/s, one direction. */
  hostLink: number;
}

export const H100_SXM: GpuModel = {
  name: "H100 SXM5",
  float64: 66.9e12,
  float32: 66.9e12,
  memoryBandwidth: 3.35e12,
  hostLink: 64e9,
};

/**
 * Assumed fraction of the roofline bound that a real GPU library reaches.
 * A round assumption, not a measurement: well-tuned GEMMs reach more, the
 * eigensolver and pivoted QR less.
 */
export const ASSUMED_EFFICIENCY = 0.5;

export interface Operation {
  /** LAPACK or BLAS routine the native addon calls. */
  routine: string;
  step: string;
  precision: Precision;
  /** Leading-order floating-point operations. */
  flops: number;
  /**
   * Bytes that must stream through memory at least once: the operands, plus
   * the trailing-matrix reads of the matrix-vector half of `sytrd` (inside
   * syevd) and `geqp3`, which bound those steps on a GPU.
   */
  bytes: number;
}

/**
 * Operations of `compressLayer` for a PIFA layer `W [m, n]` at rank `r`:
 * the float64 Gram route of the truncated SVD, then factor-space PIFA and the
 * reconstruction that measures the error. `k = min(m, n)`, `l = max(m, n)`.
 * The counts are the textbook leading terms; syevd's divide-and-conquer part
 * does less than the 4/3 k^3 counted here when eigenvalues deflate.
 */
export function pifaLayerOperations(m: number, n: number, r: number): Operation[] {
  const k = Math.min(m, n);
  const l = Math.max(m, n);
  return [
    {
      routine: "dsyrk",
      step: "Gram matrix W^T W or W W^T [k, k]",
      precision: "float64",
      flops: l * k * (k + 1),
      bytes: 8 * (l * k + k * k),
    },
    {
      routine: "dsyevd",
      step: "eigenvectors of the Gram matrix",
      precision: "float64",
      flops: (4 / 3 + 4 / 3 + 2) * k ** 3,
      // sytrd reads the trailing symmetric block once per column: sum (k - j)^2 / 2 doubles.
      bytes: 8 * (k ** 3 / 6) + 16 * k * k,
    },
    {
      routine: "dgemm",
      step: "other factor W V S^-1/2 [l, r]",
      precision: "float64",
      flops: 2 * l * k * r,
      bytes: 8 * (l * k + k * r + l * r),
    },
    {
      routine: "sgeqrf",
      step: "R of B^T [n, r]",
      precision: "float32",
      flops: 2 * n * r * r - (2 / 3) * r ** 3,
      bytes: 4 * n * r,
    },
    {
      routine: "sgemm",
      step: "M = R_B A^T [r, m]",
      precision: "float32",
      flops: 2 * r * r * m,
      bytes: 4 * (r * r + 2 * m * r),
    },
    {
      routine: "sgeqp3",
      step: "pivoted QR of M",
      precision: "float32",
      flops: 2 * r * r * m - (2 / 3) * r ** 3,
      // The column-norm and reflector updates read the trailing block once per step.
      bytes: 4 * ((r * r * m) / 2 - r ** 3 / 6),
    },
    {
      routine: "strsm",
      step: "coefficients R11^-1 R12 [r, m - r]",
      precision: "float32",
      flops: r * r * (m - r),
      bytes: 4 * (r * r + 2 * r * (m - r)),
    },
    {
      routine: "sgemm",
      step: "pivot rows A[P] B [r, n]",
      precision: "float32",
      flops: 2 * r * r * n,
      bytes: 4 * (r * r + 2 * r * n),
    },
    {
      routine: "sgemm",
      step: "reconstruction C W[P] [m - r, n] for the error",
      precision: "float32",
      flops: 2 * (m - r) * r * n,
      bytes: 4 * ((m - r) * r + r * n + (m - r) * n),
    },
  ];
}

/** Roofline seconds `max(flops / peak, bytes / bandwidth)` of one operation. */
export function rooflineSeconds(operation: Operation, gpu: GpuModel): number {
  const peak = operation.precision === "float64" ? gpu.float64 : gpu.float32;
  return Math.max(operation.flops / peak, operation.bytes / gpu.memoryBandwidth);
}

/** Estimated GPU seconds of one operation at `ASSUMED_EFFICIENCY` of its roofline. */
export function estimatedGpuSeconds(operation: Operation, gpu: GpuModel = H100_SXM): number {
  return rooflineSeconds(operation, gpu) / ASSUMED_EFFICIENCY;
}

/** Seconds to move `bytes` over the host link, one direction. */
export function transferSeconds(bytes: number, gpu: GpuModel = H100_SXM): number {
  return bytes / gpu.hostLink;
}
