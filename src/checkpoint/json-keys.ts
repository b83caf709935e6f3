/**
 * Duplicate-key detection for JSON text. `JSON.parse` keeps the last of two
 * equal keys without a word, so a header could show one tensor entry to this
 * service and another to a different reader. This scanner finds repeats at any
 * nesting depth, comparing keys after escape decoding ("a" equals "\u0061").
 */

export interface DuplicateKey {
  key: string;
  /** Keys of the enclosing objects, outermost first (`[]` for an array element). */
  path: string[];
}

interface Frame {
  /** Keys seen so far, or null for an array. */
  keys: Set<string> | null;
  expectKey: boolean;
  lastKey: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Returns the first repeated key in `text`, or undefined. `text` must already
 * be valid JSON (run `JSON.parse` first), because the scanner skips syntax checks.
 */
export function findDuplicateKey(text: string): DuplicateKey | undefined {
  // An explicit stack instead of recursion, so deep nesting cannot overflow the call stack.
  const stack: Frame[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);

    if (c === QUOTE) {
      let end = i + 1;
      let escaped = false;
      while (text.charCodeAt(end) !== QUOTE) {
        if (text.charCodeAt(end) === BACKSLASH) {
          escaped = true;
          end += 2;
        } else {
          end += 1;
        }
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const raw = text.slice(i, end + 1);
        const key: string = escaped ? JSON.parse(raw) : raw.slice(1, -1);
        if (top.keys.has(key)) {
          return { key, path: stack.slice(0, -1).map((frame) => frame.lastKey) };
        }
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = end + 1;
      continue;
    }

    if (c === 0x7b /* { */) {
      stack.push({ keys: new Set(), expectKey: true, lastKey: "" });
    } else if (c === 0x5b /* [ */) {
      stack.push({ keys: null, expectKey: false, lastKey: "[]" });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
    i += 1;
  }
  return undefined;
}
