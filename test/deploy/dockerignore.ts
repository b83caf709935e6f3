/**
 * Applies a .dockerignore to paths of the build context with the rules of Docker's pattern
 * matcher (moby/patternmatcher). Patterns are anchored at the context root, `**` spans
 * directories and `!` re-includes. The last matching pattern wins, and a pattern that matches a
 * directory excludes everything below it.
 * NOTE: picomatch replaces Go's filepath.Match here, so character classes and escapes may differ
 * in corner cases that this repository's .dockerignore does not use.
 */

import { readFile } from "node:fs/promises";
import { posix } from "node:path";
import picomatch from "picomatch";

interface IgnoreRule {
  pattern: string;
  exclusion: boolean;
  matches: (path: string) => boolean;
}

/** Parses .dockerignore text into ordered rules. */
export function parseDockerignore(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const exclusion = line.startsWith("!");
    const pattern = posix
      .normalize(exclusion ? line.slice(1).trim() : line)
      .replace(/^\/+|\/+$/g, "");
    rules.push({ pattern, exclusion, matches: picomatch(pattern, { dot: true }) });
  }
  return rules;
}

/** Returns `path` and each of its parent directories, such as `a/b/c`, `a/b`, `a`. */
function pathAndParents(path: string): string[] {
  const parts = path.split("/");
  return parts.map((_, index) => parts.slice(0, parts.length - index).join("/"));
}

/** Returns whether the rules leave `path` (relative to the context root, `/`-separated) out of the build context. */
export function isIgnored(rules: readonly IgnoreRule[], path: string): boolean {
  const candidates = pathAndParents(posix.normalize(path).replace(/^\.\/|\/+$/g, ""));
  let ignored = false;
  for (const rule of rules) {
    if (candidates.some((candidate) => rule.matches(candidate))) {
      ignored = !rule.exclusion;
    }
  }
  return ignored;
}

/** Reads the .dockerignore at `path`; a missing file ignores nothing. */
export async function loadDockerignore(path: string): Promise<IgnoreRule[]> {
  try {
    return parseDockerignore(await readFile(path, "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}
