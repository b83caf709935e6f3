import { describe, expect, it } from "vitest";
import { TokenDataError } from "../../src/data/errors.ts";
import { loadTokenizer, tokenizeText } from "../../src/data/text.ts";
import {
  MAX_SEQUENCES,
  MAX_TOKEN_FILE_BYTES,
  parseTokenIdJson,
  type TokenLimits,
  validateTokenSequences,
} from "../../src/data/token-ids.ts";
import { FIXTURE, readEvalFixture } from "./helpers.ts";

const LIMITS: TokenLimits = {
  vocabSize: 512,
  minLength: 2,
  maxLength: 8,
  maxLengthReason: "max_position_embeddings 8",
};

function tokenError(run: () => unknown): TokenDataError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(TokenDataError);
    return error as TokenDataError;
  }
  throw new Error("expected a TokenDataError");
}

function parse(value: unknown, selection = {}) {
  return parseTokenIdJson(JSON.stringify(value), LIMITS, "calibration", selection);
}

describe("parseTokenIdJson", () => {
  it("returns Int32Array sequences and ignores unknown keys", () => {
    const sequences = parse({
      texts: ["a"],
      reference: {},
      sequences: [
        [1, 2, 3],
        [4, 5],
      ],
    });
    expect(sequences).toEqual([Int32Array.from([1, 2, 3]), Int32Array.from([4, 5])]);
  });

  it("selects the first sequences and truncates them", () => {
    const data = {
      sequences: [
        [1, 2, 3, 4],
        [5, 6, 7],
        [8, 9],
      ],
    };
    expect(parse(data, { sequences: 2, sequenceLength: 2 })).toEqual([
      Int32Array.from([1, 2]),
      Int32Array.from([5, 6]),
    ]);
  });

  it("ignores ids past the truncation point", () => {
    expect(parse({ sequences: [[1, 2, 9999]] }, { sequenceLength: 2 })).toEqual([
      Int32Array.from([1, 2]),
    ]);
  });

  const cases: Array<[string, unknown, string, RegExp]> = [
    [
      "a fractional id",
      {
        sequences: [
          [1, 2],
          [3, 4.5],
        ],
      },
      "calibration.sequences[1][1]",
      /not an integer/,
    ],
    ["a string id", { sequences: [[1, "7"]] }, "calibration.sequences[0][1]", /not an integer/],
    [
      "a negative id",
      { sequences: [[1, -1]] },
      "calibration.sequences[0][1]",
      /outside the vocabulary \[0, 512\)/,
    ],
    [
      "an id at vocab_size",
      {
        sequences: [
          [1, 2],
          [1, 2, 512],
        ],
      },
      "calibration.sequences[1][2]",
      /512 is outside/,
    ],
    ["an empty sequence", { sequences: [[1, 2], []] }, "calibration.sequences[1]", /is empty/],
    [
      "a one-token sequence",
      { sequences: [[3]] },
      "calibration.sequences[0]",
      /has 1 token, but sequences need at least 2 tokens/,
    ],
    [
      "a too long sequence",
      { sequences: [[1, 2, 3, 4, 5, 6, 7, 8, 9]] },
      "calibration.sequences[0]",
      /9 tokens, more than the max_position_embeddings 8/,
    ],
    ["no sequences key", { ids: [[1, 2]] }, "calibration.sequences", /missing or not an array/],
    [
      "a non-array sequence",
      { sequences: [[1, 2], 5] },
      "calibration.sequences[1]",
      /not an array of token ids/,
    ],
    ["an empty list", { sequences: [] }, "calibration.sequences", /contains no sequences/],
    ["a top-level array", [[1, 2]], "calibration", /expected a JSON object/],
  ];
  for (const [name, value, field, message] of cases) {
    it(`rejects ${name}`, () => {
      const error = tokenError(() => parse(value));
      expect(error.code).toBe("INVALID_TOKENS");
      expect(error.status).toBe(422);
      expect(error.field).toBe(field);
      expect(error.message).toMatch(message);
      expect(error.message.startsWith(`${field}: `)).toBe(true);
    });
  }

  it("rejects text that is not JSON", () => {
    const error = tokenError(() => parseTokenIdJson("{sequences:", LIMITS, "evaluation"));
    expect(error.field).toBe("evaluation");
    expect(error.message).toMatch(/not valid JSON/);
  });

  it("rejects bytes above the size cap before parsing", () => {
    const bytes = new Uint8Array(MAX_TOKEN_FILE_BYTES + 1);
    const error = tokenError(() => parseTokenIdJson(bytes, LIMITS, "calibration"));
    expect(error.field).toBe("calibration");
    expect(error.message).toContain(`above the limit of ${MAX_TOKEN_FILE_BYTES}`);
  });

  it("rejects more sequences than the cap", () => {
    const text = `{"sequences":[${Array(MAX_SEQUENCES + 1)
      .fill("[1,2]")
      .join(",")}]}`;
    const error = tokenError(() => parseTokenIdJson(text, LIMITS, "calibration"));
    expect(error.field).toBe("calibration.sequences");
    expect(error.message).toContain(`more than the limit of ${MAX_SEQUENCES}`);
  });

  it("rejects a request for more sequences than present", () => {
    const error = tokenError(() => parse({ sequences: [[1, 2]] }, { sequences: 3 }));
    expect(error.field).toBe("calibration.sequences");
    expect(error.message).toContain("3 sequences were requested but the data contains 1");
  });

  it("rejects a sequence length below the minimum", () => {
    const error = tokenError(() => parse({ sequences: [[1, 2]] }, { sequenceLength: 1 }));
    expect(error.message).toContain("sequence length must be an integer >= 2");
  });

  it("validates sequences built in memory", () => {
    const error = tokenError(() =>
      validateTokenSequences([Int32Array.from([1, 2]), Int32Array.from([600, 1])], LIMITS, "eval"),
    );
    expect(error.field).toBe("eval.sequences[1][0]");
  });
});

describe("tokenizeText", () => {
  it("reproduces the fixture's token ids", async () => {
    const fixture = await readEvalFixture();
    const tokenizer = await loadTokenizer(FIXTURE);
    // Texts that are already trimmed and were not cut at 512 tokens encode to exactly their
    // sequence, each starting with BOS.
    const chosen = fixture.texts
      .map((text, i) => ({ text, ids: fixture.sequences[i] }))
      .filter(({ text, ids }) => text === text.trim() && ids.length < 512)
      .slice(0, 6);
    expect(chosen).toHaveLength(6);
    const expected = chosen.flatMap(({ ids }) => ids);

    const sequences = await tokenizeText(chosen.map(({ text }) => text).join("\n\n"), tokenizer, {
      sequenceLength: 100,
    });
    expect(sequences).toHaveLength(Math.floor(expected.length / 100));
    for (const [i, sequence] of sequences.entries()) {
      expect(Array.from(sequence)).toEqual(expected.slice(i * 100, (i + 1) * 100));
    }
  });

  it("stops after the requested sequences", async () => {
    const tokenizer = await loadTokenizer(FIXTURE);
    const text = "Once upon a time, there was a little girl.\n\nShe liked to play.";
    const sequences = await tokenizeText(text, tokenizer, { sequenceLength: 4, sequences: 2 });
    expect(sequences).toHaveLength(2);
    expect(sequences[0][0]).toBe(1);
  });

  it("rejects text too short for one sequence", async () => {
    const tokenizer = await loadTokenizer(FIXTURE);
    const error = await tokenizeText("Hi.", tokenizer, { sequenceLength: 64 }, "calibration").catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(TokenDataError);
    expect((error as TokenDataError).code).toBe("INVALID_TOKENS");
    expect((error as TokenDataError).field).toBe("calibration");
  });

  it("rejects a directory without tokenizer.json", async () => {
    const error = await loadTokenizer("test/fixtures/tinystories").catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(TokenDataError);
    expect((error as TokenDataError).code).toBe("INVALID_TOKENIZER");
  });
});
