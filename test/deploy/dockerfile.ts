/** Reads a Dockerfile into build stages with dockerfile-ast, for checks that need no Docker engine. */

import { readFile } from "node:fs/promises";
import { DockerfileParser, Env, type Instruction, ModifiableInstruction } from "dockerfile-ast";

export interface DockerInstruction {
  /** Upper-case keyword such as `COPY`. */
  keyword: string;
  /** 1-based line of the keyword. */
  line: number;
  /** Arguments without flags, as the shell form splits them. */
  args: string[];
  /** Argument text without flags, continuation lines joined. */
  content: string;
  /** Flags such as `--from=build`, by name; a flag without a value maps to an empty string. */
  flags: Map<string, string>;
  /** Variables set by an ENV instruction; empty for other keywords. */
  env: Map<string, string>;
}

export interface DockerStage {
  /** Name after `AS`, if any. */
  name: string | undefined;
  /** Base image with the global ARG defaults substituted. */
  image: string;
  instructions: DockerInstruction[];
}

export interface ParsedDockerfile {
  /** ARG defaults declared before the first FROM, which FROM lines may use. */
  globalArgs: Map<string, string>;
  stages: DockerStage[];
}

/** Substitutes `$NAME`, `${NAME}` and `${NAME:-default}` from `values`; unknown names stay as written. */
export function substituteArgs(text: string, values: ReadonlyMap<string, string>): string {
  return text.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, braced: string | undefined, fallback: string | undefined, bare: string | undefined) => {
      const name = braced ?? bare ?? "";
      return values.get(name) ?? fallback ?? match;
    },
  );
}

function toInstruction(instruction: Instruction): DockerInstruction {
  const keyword = instruction.getKeyword().toUpperCase();
  const flags = new Map<string, string>();
  if (instruction instanceof ModifiableInstruction) {
    for (const flag of instruction.getFlags()) {
      flags.set(flag.getName(), flag.getValue() ?? "");
    }
  }
  const env = new Map<string, string>();
  if (instruction instanceof Env) {
    for (const property of instruction.getProperties()) {
      env.set(property.getName(), property.getValue() ?? "");
    }
  }
  return {
    keyword,
    line: instruction.getRange().start.line + 1,
    args: instruction.getArguments().map((argument) => argument.getValue()),
    content: instruction.getArgumentsContent() ?? "",
    flags,
    env,
  };
}

/** Parses the Dockerfile at `path`; throws when it has no FROM. */
export async function parseDockerfile(path: string): Promise<ParsedDockerfile> {
  const dockerfile = DockerfileParser.parse(await readFile(path, "utf8"));
  const globalArgs = new Map<string, string>();
  const stages: DockerStage[] = [];

  for (const instruction of dockerfile.getInstructions()) {
    const parsed = toInstruction(instruction);
    if (parsed.keyword === "FROM") {
      const [image = "", as, name] = parsed.args;
      stages.push({
        name: as?.toUpperCase() === "AS" ? name : undefined,
        image: substituteArgs(image, globalArgs),
        instructions: [],
      });
    } else if (stages.length === 0) {
      if (parsed.keyword === "ARG") {
        const [name = "", value = ""] = (parsed.args[0] ?? "").split(/=(.*)/s);
        globalArgs.set(name, value);
      }
    } else {
      stages[stages.length - 1]?.instructions.push(parsed);
    }
  }
  if (stages.length === 0) {
    throw new Error(`${path} has no FROM instruction; a Dockerfile must start a build stage.`);
  }
  return { globalArgs, stages };
}

/** Returns the JSON array of an exec-form argument (`["pifa", "api"]`), or undefined for the shell form. */
export function execForm(content: string): string[] | undefined {
  const text = content.trim();
  if (!text.startsWith("[")) return undefined;
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new Error(`Invalid exec form ${text}: expected a JSON array of strings.`);
  }
  return value;
}

/** Returns the instructions of `stage` with `keyword`. */
export function instructionsOf(stage: DockerStage, keyword: string): DockerInstruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** Returns the environment a stage sets with ENV, later values replacing earlier ones. */
export function stageEnv(stage: DockerStage): Map<string, string> {
  const env = new Map<string, string>();
  for (const instruction of instructionsOf(stage, "ENV")) {
    for (const [name, value] of instruction.env) env.set(name, value);
  }
  return env;
}

/**
 * Returns the sources and destination of a COPY or ADD instruction, from either the shell form
 * (`COPY a b ./`) or the exec form (`COPY ["a", "b", "./"]`).
 */
export function copyPaths(instruction: DockerInstruction): {
  sources: string[];
  destination: string;
} {
  const paths = execForm(instruction.content) ?? instruction.args;
  if (paths.length < 2) {
    throw new Error(
      `${instruction.keyword} on line ${instruction.line} needs a source and a destination, got ${JSON.stringify(paths)}.`,
    );
  }
  return { sources: paths.slice(0, -1), destination: paths[paths.length - 1] ?? "" };
}

/** Returns the exec-form command of a `HEALTHCHECK CMD [...]`, or undefined for `HEALTHCHECK NONE`. */
export function healthcheckCommand(instruction: DockerInstruction): string[] | undefined {
  const [subcommand = ""] = instruction.args;
  if (subcommand.toUpperCase() === "NONE") return undefined;
  const command = execForm(instruction.content.trim().replace(/^CMD\s+/i, ""));
  if (subcommand.toUpperCase() !== "CMD" || command === undefined) {
    throw new Error(
      `HEALTHCHECK on line ${instruction.line} must be NONE or CMD in exec form, got ${JSON.stringify(instruction.content)}.`,
    );
  }
  return command;
}
