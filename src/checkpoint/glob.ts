/**
 * Glob matching for tensor names with a cost bounded by name length x pattern length.
 *
 * picomatch compiles each `*` to a lazy `[^/]*?` regex term, and V8 backtracks
 * through every split of the name among them. One call of picomatch's matcher
 * for `*a*a*a*b` on a name of 1024 `a` characters took 18.5 s (picomatch
 * 4.0.7, Node 20.20, one x86-64 core). Include and exclude globs arrive with
 * the request and tensor names with the upload, so this module matches with
 * the classic two-pointer wildcard algorithm instead. The syntax is the subset
 * of picomatch that fits dotted tensor names, with the same results on it:
 *
 * - `*` and `**`: any run of characters, dots included (names have no `/`)
 * - `?`: exactly one character
 * - `[abc]`, `[a-z]`, `[^a-z]`: one character in or not in the set
 * - `[!a-z]`: negated as in POSIX fnmatch and bash (picomatch 4.0.7 instead
 *   reads it as a set that contains `!`)
 * - `{a,b}` alternatives (nestable) and `{0..31}` integer ranges
 * - `\x`: the character x itself
 *
 * Extglobs such as `+(a|b)` and POSIX classes such as `[[:digit:]]` are not supported.
 */
import { CheckpointError, preview } from "./errors.ts";

export const MAX_GLOBS = 64;
export const MAX_GLOB_LENGTH = 256;
/** Cap on patterns after brace expansion, summed over all globs of one option. */
export const MAX_GLOB_EXPANSIONS = 256;
/** Cap on pattern characters after brace expansion, summed over all globs of one option. */
export const MAX_EXPANDED_GLOB_LENGTH = 16_384;

type Atom =
  | { kind: "star" }
  | { kind: "any" }
  | { kind: "char"; code: number }
  | { kind: "class"; negated: boolean; ranges: Array<[number, number]> };

export type NameMatcher = (name: string) => boolean;

class GlobSyntaxError extends Error {}

/** Index of the `}` closing the `{` at `open`, honoring escapes and nesting, or -1. */
function findBraceClose(glob: string, open: number): number {
  let depth = 0;
  for (let i = open; i < glob.length; i++) {
    const c = glob[i];
    if (c === "\\") {
      i++;
    } else if (c === "{") {
      depth++;
    } else if (c === "}") {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** Splits brace content at top-level commas. */
function splitAlternatives(body: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === "\\") {
      i++;
    } else if (c === "{") {
      depth++;
    } else if (c === "}") {
      depth--;
    } else if (c === "," && depth === 0) {
      parts.push(body.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(body.slice(start));
  return parts;
}

/** Expands the first brace group of `glob` recursively; `budget` counts results left. */
function expandBraces(glob: string, budget: { left: number }): string[] {
  let open = -1;
  for (let i = 0; i < glob.length; i++) {
    if (glob[i] === "\\") {
      i++;
    } else if (glob[i] === "{") {
      open = i;
      break;
    }
  }
  if (open < 0) {
    if (--budget.left < 0)
      throw new GlobSyntaxError(`expands to more than ${MAX_GLOB_EXPANSIONS} patterns`);
    return [glob];
  }
  const close = findBraceClose(glob, open);
  if (close < 0) throw new GlobSyntaxError(`has an unclosed "{" at position ${open}`);

  const head = glob.slice(0, open);
  const body = glob.slice(open + 1, close);
  const tail = glob.slice(close + 1);

  let alternatives: string[];
  const range = /^(-?\d+)\.\.(-?\d+)$/.exec(body);
  if (range !== null) {
    const from = Number(range[1]);
    const to = Number(range[2]);
    if (Math.abs(to - from) + 1 > MAX_GLOB_EXPANSIONS) {
      throw new GlobSyntaxError(`range {${body}} has more than ${MAX_GLOB_EXPANSIONS} values`);
    }
    const step = from <= to ? 1 : -1;
    alternatives = [];
    for (let k = from; k !== to + step; k += step) alternatives.push(String(k));
  } else {
    alternatives = splitAlternatives(body);
    // A group without a comma is literal text, as in bash and picomatch.
    if (alternatives.length === 1) alternatives = [`\\{${body}\\}`];
  }

  const results: string[] = [];
  for (const alternative of alternatives) {
    results.push(...expandBraces(head + alternative + tail, budget));
  }
  return results;
}

/** Parses a `[...]` class starting at `open`; returns the atom and the index after `]`. */
function parseClass(pattern: string, open: number): { atom: Atom; next: number } {
  let i = open + 1;
  let negated = false;
  if (pattern[i] === "!" || pattern[i] === "^") {
    negated = true;
    i++;
  }
  const ranges: Array<[number, number]> = [];
  let first = true;
  while (i < pattern.length && (pattern[i] !== "]" || first)) {
    first = false;
    let low = pattern.charCodeAt(i);
    if (pattern[i] === "\\" && i + 1 < pattern.length) low = pattern.charCodeAt(++i);
    i++;
    let high = low;
    if (pattern[i] === "-" && i + 1 < pattern.length && pattern[i + 1] !== "]") {
      i++;
      high = pattern.charCodeAt(i);
      if (pattern[i] === "\\" && i + 1 < pattern.length) high = pattern.charCodeAt(++i);
      i++;
      if (high < low) throw new GlobSyntaxError(`has a reversed class range at position ${open}`);
    }
    ranges.push([low, high]);
  }
  if (i >= pattern.length) throw new GlobSyntaxError(`has an unclosed "[" at position ${open}`);
  return { atom: { kind: "class", negated, ranges }, next: i + 1 };
}

/** Parses one brace-free pattern into atoms, collapsing runs of `*`. */
function parseAtoms(pattern: string): Atom[] {
  const atoms: Atom[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i];
    if (c === "*") {
      if (atoms[atoms.length - 1]?.kind !== "star") atoms.push({ kind: "star" });
      i++;
    } else if (c === "?") {
      atoms.push({ kind: "any" });
      i++;
    } else if (c === "[") {
      const { atom, next } = parseClass(pattern, i);
      atoms.push(atom);
      i = next;
    } else if (c === "\\") {
      if (i + 1 >= pattern.length) throw new GlobSyntaxError("ends with a lone backslash");
      atoms.push({ kind: "char", code: pattern.charCodeAt(i + 1) });
      i += 2;
    } else {
      atoms.push({ kind: "char", code: pattern.charCodeAt(i) });
      i++;
    }
  }
  return atoms;
}

function matchesAtom(atom: Atom, code: number): boolean {
  if (atom.kind === "any") return true;
  if (atom.kind === "char") return atom.code === code;
  if (atom.kind === "class") {
    let inside = false;
    for (const [low, high] of atom.ranges) {
      if (code >= low && code <= high) {
        inside = true;
        break;
      }
    }
    return inside !== atom.negated;
  }
  return false;
}

/**
 * Matches the whole name against atoms. On a mismatch the scan resumes one
 * character after where the last `*` started, so the cost is at most
 * name length x pattern length.
 */
function matchAtoms(atoms: readonly Atom[], name: string): boolean {
  let p = 0;
  let s = 0;
  let starAtom = -1;
  let starStart = 0;
  while (s < name.length) {
    const atom = atoms[p];
    if (atom !== undefined && atom.kind === "star") {
      starAtom = p;
      starStart = s;
      p++;
    } else if (atom !== undefined && matchesAtom(atom, name.charCodeAt(s))) {
      p++;
      s++;
    } else if (starAtom >= 0) {
      p = starAtom + 1;
      starStart++;
      s = starStart;
    } else {
      return false;
    }
  }
  while (p < atoms.length && atoms[p].kind === "star") p++;
  return p === atoms.length;
}

/**
 * Compiles globs into one matcher that is true when any glob matches the
 * whole name. `option` names the request option in error messages.
 */
export function compileGlobs(globs: readonly string[], option: string): NameMatcher {
  if (globs.length > MAX_GLOBS) {
    throw new CheckpointError(
      "INVALID_GLOB",
      `${option} has ${globs.length} globs, above the limit of ${MAX_GLOBS}: combine them with {a,b} alternatives`,
    );
  }
  const budget = { left: MAX_GLOB_EXPANSIONS };
  const patterns: Atom[][] = [];
  let expandedLength = 0;
  for (const glob of globs) {
    if (typeof glob !== "string" || glob.length === 0 || glob.length > MAX_GLOB_LENGTH) {
      throw new CheckpointError(
        "INVALID_GLOB",
        `${option} glob ${preview(glob)} must be a non-empty string of at most ${MAX_GLOB_LENGTH} characters`,
      );
    }
    try {
      for (const pattern of expandBraces(glob, budget)) {
        expandedLength += pattern.length;
        patterns.push(parseAtoms(pattern));
      }
    } catch (error) {
      if (!(error instanceof GlobSyntaxError)) throw error;
      throw new CheckpointError(
        "INVALID_GLOB",
        `${option} glob ${preview(glob)} ${error.message}: fix the glob (syntax: * ? [a-z] {a,b} {0..9} \\x)`,
      );
    }
    if (expandedLength > MAX_EXPANDED_GLOB_LENGTH) {
      throw new CheckpointError(
        "INVALID_GLOB",
        `${option} globs expand to more than ${MAX_EXPANDED_GLOB_LENGTH} characters: use fewer or shorter alternatives`,
      );
    }
  }
  return (name) => patterns.some((atoms) => matchAtoms(atoms, name));
}
