import picomatch from "picomatch";
import { describe, expect, it } from "vitest";
import { compileGlobs, MAX_GLOB_EXPANSIONS } from "../../src/checkpoint/glob.ts";
import { selectTargets, type TargetCandidate } from "../../src/checkpoint/targets.ts";
import { expectCheckpointError } from "./helpers.ts";

function llamaTensors(layers: number): TargetCandidate[] {
  const tensors: TargetCandidate[] = [
    { name: "model.embed_tokens.weight", dtype: "BF16", shape: [512, 64] },
  ];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    tensors.push(
      { name: `${p}.input_layernorm.weight`, dtype: "BF16", shape: [64] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: "BF16", shape: [64, 64] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: "BF16", shape: [32, 64] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: "BF16", shape: [32, 64] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: "BF16", shape: [64, 64] },
      { name: `${p}.self_attn.q_proj.bias`, dtype: "BF16", shape: [64] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: "BF16", shape: [64] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: "BF16", shape: [172, 64] },
      { name: `${p}.mlp.up_proj.weight`, dtype: "BF16", shape: [172, 64] },
      { name: `${p}.mlp.down_proj.weight`, dtype: "BF16", shape: [64, 172] },
    );
  }
  tensors.push(
    { name: "model.norm.weight", dtype: "BF16", shape: [64] },
    { name: "lm_head.weight", dtype: "BF16", shape: [512, 64] },
  );
  return tensors;
}

const names = (tensors: readonly TargetCandidate[]) => tensors.map((t) => t.name);

describe("selectTargets defaults", () => {
  it("selects the seven projections of every layer", () => {
    const selected = names(selectTargets(llamaTensors(2)));
    expect(selected).toEqual([
      "model.layers.0.self_attn.q_proj.weight",
      "model.layers.0.self_attn.k_proj.weight",
      "model.layers.0.self_attn.v_proj.weight",
      "model.layers.0.self_attn.o_proj.weight",
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.self_attn.q_proj.weight",
      "model.layers.1.self_attn.k_proj.weight",
      "model.layers.1.self_attn.v_proj.weight",
      "model.layers.1.self_attn.o_proj.weight",
      "model.layers.1.mlp.gate_proj.weight",
      "model.layers.1.mlp.up_proj.weight",
      "model.layers.1.mlp.down_proj.weight",
    ]);
  });

  it("skips non-2-D or non-float projections", () => {
    const tensors: TargetCandidate[] = [
      { name: "model.layers.0.self_attn.q_proj.weight", dtype: "I8", shape: [64, 64] },
      { name: "model.layers.0.self_attn.k_proj.weight", dtype: "F32", shape: [32, 64, 1] },
      { name: "model.layers.0.self_attn.v_proj.weight", dtype: "F64", shape: [32, 64] },
      { name: "model.layers.0.self_attn.o_proj.weight", dtype: "F16", shape: [64, 64] },
    ];
    expect(names(selectTargets(tensors))).toEqual(["model.layers.0.self_attn.o_proj.weight"]);
  });
});

describe("selectTargets globs", () => {
  it("replaces the defaults with include globs", () => {
    const selected = selectTargets(llamaTensors(3), { include: ["model.layers.{0,2}.mlp.*"] });
    expect(names(selected)).toEqual([
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
      "model.layers.2.mlp.gate_proj.weight",
      "model.layers.2.mlp.up_proj.weight",
      "model.layers.2.mlp.down_proj.weight",
    ]);
  });

  it("include never adds protected tensors", () => {
    expect(names(selectTargets(llamaTensors(1), { include: ["*"] }))).toEqual(
      names(selectTargets(llamaTensors(1))),
    );
  });

  it("removes exclude matches from the defaults", () => {
    const selected = selectTargets(llamaTensors(2), {
      exclude: ["*.self_attn.*", "model.layers.1.*"],
    });
    expect(names(selected)).toEqual([
      "model.layers.0.mlp.gate_proj.weight",
      "model.layers.0.mlp.up_proj.weight",
      "model.layers.0.mlp.down_proj.weight",
    ]);
  });

  it("treats an empty include list as the defaults", () => {
    expect(selectTargets(llamaTensors(1), { include: [] })).toHaveLength(7);
  });
});

describe("selectTargets tied weights", () => {
  it("skips lm_head aliased as embedding", () => {
    const tensors: TargetCandidate[] = [
      { name: "lm_head.weight", dtype: "F32", shape: [512, 64] },
      { name: "model.layers.0.mlp.up_proj.weight", dtype: "F32", shape: [172, 64] },
    ];
    const metadata = { format: "pt", "model.embed_tokens.weight": "lm_head.weight" };
    expect(names(selectTargets(tensors, { include: ["*"], metadata }))).toEqual([
      "model.layers.0.mlp.up_proj.weight",
    ]);
  });

  it("skips projection aliased to head", () => {
    const tensors: TargetCandidate[] = [
      { name: "model.layers.0.mlp.up_proj.weight", dtype: "F32", shape: [172, 64] },
      { name: "model.layers.0.mlp.down_proj.weight", dtype: "F32", shape: [64, 172] },
    ];
    const metadata = { "lm_head.weight": "model.layers.0.mlp.up_proj.weight" };
    expect(names(selectTargets(tensors, { metadata }))).toEqual([
      "model.layers.0.mlp.down_proj.weight",
    ]);
  });

  it.each([
    "output.weight",
    "gpt_neox.embed_in.weight",
    "embed_out.weight",
    "transformer.wte.weight",
  ])("never selects %s", (name) => {
    const error = selectTargets.bind(null, [{ name, dtype: "F32", shape: [512, 64] }], {
      include: ["*"],
    });
    expect(error).toThrow("no tensor matches");
  });
});

describe("selectTargets errors", () => {
  it("NO_TARGETS lists eligible names", async () => {
    const error = await expectCheckpointError(
      () => selectTargets(llamaTensors(1), { include: ["transformer.h.*"] }),
      "NO_TARGETS",
    );
    expect(error.status).toBe(400);
    expect(error.message).toContain('include ["transformer.h.*"]');
    expect(error.message).toContain(
      'eligible 2-D float tensors include "model.layers.0.self_attn.q_proj.weight"',
    );
  });

  it("NO_TARGETS for another layout", async () => {
    const tensors: TargetCandidate[] = [
      { name: "transformer.h.0.attn.c_attn.weight", dtype: "F32", shape: [768, 2304] },
      { name: "transformer.h.0.ln_1.weight", dtype: "F32", shape: [768] },
    ];
    const error = await expectCheckpointError(() => selectTargets(tensors), "NO_TARGETS");
    expect(error.message).toContain("the default LLaMA projection targets");
    expect(error.message).toContain('"transformer.h.0.attn.c_attn.weight"');
    expect(error.message).not.toContain("ln_1");
    expect(names(selectTargets(tensors, { include: ["transformer.h.*.attn.*"] }))).toEqual([
      "transformer.h.0.attn.c_attn.weight",
    ]);
  });

  it.each([
    ["an empty glob", [""]],
    ["an unclosed class", ["model.[0-9"]],
    ["an unclosed brace", ["model.{a,b"]],
    ["an overlong glob", ["a".repeat(257)]],
    ["too many globs", new Array(65).fill("a")],
    ["too many expansions", [`{${new Array(MAX_GLOB_EXPANSIONS + 1).fill("a").join(",")}}`]],
    ["a huge range", ["{0..100000}"]],
  ])("INVALID_GLOB for %s", async (_kind, include) => {
    const error = await expectCheckpointError(
      () => selectTargets(llamaTensors(1), { include }),
      "INVALID_GLOB",
    );
    expect(error.status).toBe(400);
  });
});

describe("compileGlobs", () => {
  const tensorNames = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.12.self_attn.k_proj.weight",
    "model.layers.3.mlp.down_proj.weight",
    "model.layers.31.mlp.up_proj.weight",
    "lm_head.weight",
    "a*b",
    "a?b",
    "model.layers.1[0].x",
  ];
  const globs = [
    "*",
    "**",
    "model.layers.*.mlp.*",
    "*.self_attn.*",
    "model.layers.?.*",
    "model.layers.[0-9].*",
    "model.layers.[^0-2]*",
    "model.layers.1[0-5].*",
    "*.{q,k,v}_proj.weight",
    "model.layers.{0..3}.*",
    "*proj.weight",
    "lm_head.weight",
    "a\\*b",
    "a\\?b",
    "model.layers.1\\[0\\].x",
    "*.*.*.*.*",
  ];

  it.each(globs)("agrees with picomatch on %s", (glob) => {
    const reference = picomatch(glob, { dot: true });
    const matcher = compileGlobs([glob], "include");
    for (const name of tensorNames) {
      expect(matcher(name), `${glob} on ${name}`).toBe(reference(name));
    }
  });

  it("negates [!...] as POSIX does", () => {
    // picomatch 4.0.7 reads [!0-2] as the set {!, 0, 1, 2}; fnmatch and bash negate it.
    const matcher = compileGlobs(["model.layers.[!0-2].*"], "include");
    expect(matcher("model.layers.3.mlp.up_proj.weight")).toBe(true);
    expect(matcher("model.layers.1.mlp.up_proj.weight")).toBe(false);
    expect(matcher("model.layers.!.mlp.up_proj.weight")).toBe(true);
  });

  it("stays fast on backtracking input", () => {
    // picomatch's regex for this glob explores every split of the name among the stars.
    const matcher = compileGlobs(["*a*a*a*a*a*a*b"], "include");
    const name = "a".repeat(1024);
    let matched = 0;
    for (let i = 0; i < 20; i++) if (matcher(name)) matched++;
    expect(matched).toBe(0);
    expect(compileGlobs(["model.*.*.*.*.weight"], "include")(`model.${".".repeat(1000)}`)).toBe(
      false,
    );
  });
});
