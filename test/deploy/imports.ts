/** Lists the npm packages that run-time source files import, to check them against package.json. */

import { readdir, readFile } from "node:fs/promises";
import { isBuiltin } from "node:module";
import { join, relative } from "node:path";

// Static `import ... from "x"` and `export ... from "x"` (not `import type`, which TypeScript
// erases), side-effect `import "x"`, dynamic `import("x")` and `require("x")`.
const IMPORT_PATTERNS = [
  /^\s*(?:import|export)\s+(?!type\s)[^;]*?\sfrom\s*["']([^"']+)["']/gm,
  /^\s*import\s*["']([^"']+)["']/gm,
  /\bimport\(\s*["']([^"']+)["']\s*\)/g,
  /\brequire\(\s*["']([^"']+)["']\s*\)/g,
];

/** Returns the package name of a bare specifier: `@aws-sdk/client-s3/x` gives `@aws-sdk/client-s3`. */
export function packageName(specifier: string): string {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier);
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      yield* sourceFiles(path);
    } else if (/\.(?:ts|js|mjs|cjs)$/.test(entry.name) && !entry.name.endsWith(".d.ts")) {
      yield path;
    }
  }
}

/**
 * Returns each npm package imported by a source file under `dirs`, mapped to the files (relative
 * to `root`) that import it. Relative paths and Node.js built-in modules are left out.
 */
export async function importedPackages(
  root: string,
  dirs: readonly string[],
): Promise<Map<string, string[]>> {
  const packages = new Map<string, string[]>();
  for (const dir of dirs) {
    for await (const file of sourceFiles(join(root, dir))) {
      const text = await readFile(file, "utf8");
      for (const pattern of IMPORT_PATTERNS) {
        for (const match of text.matchAll(pattern)) {
          const specifier = match[1] ?? "";
          if (specifier.startsWith(".") || specifier.startsWith("/") || isBuiltin(specifier)) {
            continue;
          }
          const name = packageName(specifier);
          const files = packages.get(name) ?? [];
          if (!files.includes(relative(root, file))) files.push(relative(root, file));
          packages.set(name, files);
        }
      }
    }
  }
  return packages;
}
