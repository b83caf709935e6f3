/** Greedy decoding: extend a prompt with the most likely next token, step by step. */

import type { Checkpoint } from "../checkpoint/checkpoint.ts";
import { modelForward } from "./model.ts";
import type { ModelSpec } from "./spec.ts";
import { loadResidentWeights } from "./weights.ts";

/**
 * Extends `prompt` to `length` tokens by appending the argmax of the last
 * row of the logits each step (the lowest id wins a tie). Returns the whole
 * sequence, prompt included.
 *
 * NOTE: there is no key/value cache, so every step reruns the whole prefix
 * and reloads every decoder layer: meant for smoke tests of small models,
 * not for generation.
 */
export async function greedyDecode(
  checkpoint: Checkpoint,
  spec: ModelSpec,
  prompt: readonly number[],
  length: number,
): Promise<number[]> {
  if (prompt.length === 0)
    throw new RangeError("greedy decoding needs a prompt of at least 1 token");
  const resident = await loadResidentWeights(checkpoint, spec);
  const tokens = [...prompt];
  while (tokens.length < length) {
    const logits = await modelForward(checkpoint, spec, tokens, resident); // [T, vocab]
    const vocab = logits.cols;
    const last = (logits.rows - 1) * vocab;
    let best = 0;
    for (let j = 1; j < vocab; j++) {
      if (logits.data[last + j] > logits.data[last + best]) best = j;
    }
    tokens.push(best);
  }
  return tokens;
}
