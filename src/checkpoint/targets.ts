/**
 * Choice of the tensors to compress. By default these are the attention and
 * MLP projection weights of LLaMA-family decoders. Embeddings, output heads,
 * norms, biases, non-2-D tensors and non-float tensors are never chosen, even
 * when an include glob names them.
 */
import { isFloatDtype } from "./dtypes.ts";
import { CheckpointError, preview, quote } from "./errors.ts";
import { compileGlobs } from "./glob.ts";

/** `model.layers.N.self_attn.{q,k,v,o}_proj.weight` and `model.layers.N.mlp.{gate,up,down}_proj.weight`. */
export const DEFAULT_TARGET_PATTERN =
  /^model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.weight$/;

export interface TargetCandidate {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
}

export interface TargetOptions {
  /** Globs that replace the default targets when given (non-empty). */
  readonly include?: readonly string[];
  /** Globs removed from the selection. */
  readonly exclude?: readonly string[];
  /**
   * Safetensors `__metadata__`. `safetensors.torch.save_model` stores one
   * tensor of a tied pair and records the dropped name as a key whose value is
   * the stored name, so a stored `lm_head.weight` may also be the embedding.
   */
  readonly metadata?: Readonly<Record<string, string>>;
}

const EMBEDDING_SEGMENT = /embed|^wte$|^wpe$/;
const HEAD_SEGMENT = /^(?:lm_head|embed_out)$/;
const NORM_SEGMENT = /norm|^ln(?:_|\d|$)/;
const BIAS_SEGMENT = /bias/;

/** Returns "embedding" or "output head" when the name is one, else undefined. */
function embeddingOrHead(name: string): string | undefined {
  const segments = name.split(".");
  if (segments.some((segment) => HEAD_SEGMENT.test(segment))) return "output head";
  // Meta's original LLaMA layout names the head `output.weight`.
  if (segments[0] === "output") return "output head";
  if (segments.some((segment) => EMBEDDING_SEGMENT.test(segment))) return "embedding";
  return undefined;
}

/** Stored tensors tied to an embedding or output head through `__metadata__` aliases. */
function tiedToEmbeddingOrHead(
  stored: ReadonlySet<string>,
  metadata: Readonly<Record<string, string>>,
): Set<string> {
  const tied = new Set<string>();
  for (const [alias, target] of Object.entries(metadata)) {
    if (embeddingOrHead(alias) === undefined && embeddingOrHead(target) === undefined) continue;
    if (stored.has(target)) tied.add(target);
    if (stored.has(alias)) tied.add(alias);
  }
  return tied;
}

/** Returns why a tensor can never be a compression target, or undefined when it can. */
export function ineligibilityReason(
  tensor: TargetCandidate,
  tied: ReadonlySet<string> = new Set(),
): string | undefined {
  const kind = embeddingOrHead(tensor.name);
  if (kind !== undefined) return kind;
  if (tied.has(tensor.name)) return "tied to the embedding or output head";
  const segments = tensor.name.split(".");
  if (segments.some((segment) => NORM_SEGMENT.test(segment))) return "norm";
  if (BIAS_SEGMENT.test(segments[segments.length - 1])) return "bias";
  if (tensor.shape.length !== 2) return `${tensor.shape.length}-D, not a matrix`;
  if (!isFloatDtype(tensor.dtype)) return `dtype ${tensor.dtype} is not F32, F16 or BF16`;
  return undefined;
}

/**
 * Selects compression targets in input order. Raises NO_TARGETS (status 400)
 * when nothing is selected, and INVALID_GLOB for a bad glob.
 */
export function selectTargets<T extends TargetCandidate>(
  tensors: readonly T[],
  options: TargetOptions = {},
): T[] {
  const include =
    options.include !== undefined && options.include.length > 0 ? options.include : undefined;
  const isIncluded =
    include === undefined
      ? (name: string) => DEFAULT_TARGET_PATTERN.test(name)
      : compileGlobs(include, "include");
  const isExcluded = compileGlobs(options.exclude ?? [], "exclude");

  const stored = new Set(tensors.map((tensor) => tensor.name));
  const tied = tiedToEmbeddingOrHead(stored, options.metadata ?? {});

  const eligible = tensors.filter((tensor) => ineligibilityReason(tensor, tied) === undefined);
  const selected = eligible.filter((tensor) => isIncluded(tensor.name) && !isExcluded(tensor.name));
  if (selected.length > 0) return selected;

  const hints = (eligible.length > 0 ? eligible : tensors)
    .slice(0, 5)
    .map((tensor) => quote(tensor.name));
  const rule =
    include === undefined
      ? "the default LLaMA projection targets"
      : `include ${preview(include, 300)}`;
  const excluded = options.exclude?.length ? ` minus exclude ${preview(options.exclude, 300)}` : "";
  const hintText =
    hints.length === 0
      ? "the checkpoint has no tensors"
      : `${eligible.length > 0 ? "eligible 2-D float tensors include" : "tensors include"} ${hints.join(", ")}`;
  throw new CheckpointError(
    "NO_TARGETS",
    `no tensor matches ${rule}${excluded} among ${tensors.length} tensors (${eligible.length} eligible): ${hintText}; pass include globs that name the projection weights`,
  );
}
