/**
 * Rotary position embeddings in the rotate-half convention of Hugging Face
 * LLaMA: within each head of size `d`, dimension `i < d/2` pairs with
 * `i + d/2` and both rotate by the angle `position * inverseFrequency[i]`.
 * Angles, cosines and sines are computed in float64.
 */

import type { Matrix32 } from "../linalg/matrix.ts";
import type { Llama3RopeScaling, ModelSpec } from "./spec.ts";

/** Default inverse frequencies `theta^(-2i/d)` for `i < d/2`, `[d/2]`. */
export function defaultInverseFrequencies(headDim: number, theta: number): Float64Array {
  const half = headDim / 2;
  const frequencies = new Float64Array(half);
  for (let i = 0; i < half; i++) frequencies[i] = 1 / theta ** ((2 * i) / headDim);
  return frequencies;
}

/**
 * Applies Llama 3 frequency scaling as transformers'
 * `_compute_llama3_parameters` does: wavelengths longer than
 * `original_max_position_embeddings / low_freq_factor` are divided by
 * `factor`, those shorter than `original_max_position_embeddings /
 * high_freq_factor` are kept, and the band between is interpolated
 * smoothly. Returns a new array.
 */
export function llama3InverseFrequencies(
  frequencies: Float64Array,
  scaling: Llama3RopeScaling,
): Float64Array {
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings } = scaling;
  const lowFreqWavelength = originalMaxPositionEmbeddings / lowFreqFactor;
  const highFreqWavelength = originalMaxPositionEmbeddings / highFreqFactor;
  const scaled = new Float64Array(frequencies.length);
  for (let i = 0; i < frequencies.length; i++) {
    const frequency = frequencies[i];
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < highFreqWavelength) {
      scaled[i] = frequency;
    } else if (wavelength > lowFreqWavelength) {
      scaled[i] = frequency / factor;
    } else {
      const smooth =
        (originalMaxPositionEmbeddings / wavelength - lowFreqFactor) /
        (highFreqFactor - lowFreqFactor);
      scaled[i] = ((1 - smooth) * frequency) / factor + smooth * frequency;
    }
  }
  return scaled;
}

/** Inverse frequencies of the model's rotary embedding, `[headDim / 2]`. */
export function inverseFrequencies(spec: ModelSpec): Float64Array {
  const base = defaultInverseFrequencies(spec.headDim, spec.ropeTheta);
  return spec.ropeScaling === undefined ? base : llama3InverseFrequencies(base, spec.ropeScaling);
}

/** Cosines and sines of every position's angles, each `[T, headDim / 2]` row-major. */
export interface RotaryTable {
  cos: Float64Array;
  sin: Float64Array;
  half: number;
}

export function rotaryTable(frequencies: Float64Array, positions: ArrayLike<number>): RotaryTable {
  const half = frequencies.length;
  const cos = new Float64Array(positions.length * half);
  const sin = new Float64Array(positions.length * half);
  for (let t = 0; t < positions.length; t++) {
    for (let i = 0; i < half; i++) {
      const angle = positions[t] * frequencies[i];
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin, half };
}

/**
 * Rotates every head of `x` `[T, heads * headDim]` by the table's angles and
 * returns a new matrix; `x` is left unchanged.
 */
export function applyRotary(x: Matrix32, heads: number, table: RotaryTable): Matrix32 {
  const { cos, sin, half } = table;
  const headDim = 2 * half;
  const width = heads * headDim;
  if (x.cols !== width || cos.length !== x.rows * half) {
    throw new RangeError(
      `rotary input [${x.rows}, ${x.cols}] does not match ${heads} heads of size ${headDim} over ${cos.length / half} positions`,
    );
  }
  const out = new Float32Array(x.data.length); // [T, heads * headDim]
  for (let t = 0; t < x.rows; t++) {
    const angles = t * half;
    for (let h = 0; h < heads; h++) {
      const base = t * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const first = x.data[base + i];
        const second = x.data[base + half + i];
        const c = cos[angles + i];
        const s = sin[angles + i];
        out[base + i] = first * c - second * s;
        out[base + half + i] = second * c + first * s;
      }
    }
  }
  return { rows: x.rows, cols: x.cols, data: out };
}
