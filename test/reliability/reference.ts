/** Synthetic source checkpoints in the service's storage, and their offline reference artifacts. */

import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openCheckpoint } from "../../src/checkpoint/checkpoint.ts";
import { parseCompressionOptions } from "../../src/compression/options.ts";
import { setThreads } from "../../src/native/index.ts";
import { compressCheckpoint } from "../../workers/pipeline/compress.ts";
import { type SyntheticShape, writeSyntheticLlama } from "../api/synthetic.ts";

/** 8 decoder layers of 256-dim (56 linears), so a job runs for a few seconds on two cores. */
export const EIGHT_LAYERS: SyntheticShape = {
  layers: 8,
  hidden: 256,
  intermediate: 512,
  vocab: 256,
};

/** Writes a synthetic checkpoint under `<storageRoot>/models/<name>` and returns its source prefix. */
export async function writeSource(
  storageRoot: string,
  name: string,
  shape: SyntheticShape,
): Promise<string> {
  const directory = join(storageRoot, "models", name);
  await mkdir(directory, { recursive: true });
  await writeSyntheticLlama(directory, shape);
  return `models/${name}`;
}

/**
 * Compresses `directory` offline with one BLAS thread, as the child workers run, and returns the
 * bytes of the artifact's model.safetensors.
 */
export async function referenceSafetensors(directory: string, options: unknown): Promise<Buffer> {
  const parsed = parseCompressionOptions(options);
  if (!parsed.ok) throw new Error(`invalid reference options: ${parsed.issue.message}`);
  setThreads(1);
  const outDir = await mkdtemp(join(tmpdir(), "pifa-reference-"));
  const checkpoint = await openCheckpoint(directory);
  try {
    await compressCheckpoint({
      checkpoint,
      config: await readFile(join(directory, "config.json")),
      options: parsed.options,
      outDir,
    });
    return await readFile(join(outDir, "model.safetensors"));
  } finally {
    await checkpoint.close();
    await rm(outDir, { recursive: true, force: true });
  }
}
