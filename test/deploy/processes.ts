/** Child processes for the deployment tests: commands run to completion, and a redis-server. */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { Redis } from "ioredis";
import { findFreePort } from "../../src/redis/free-port.ts";

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command` with `args` to completion; the child is killed after `timeoutMs`. */
export async function runCommand(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
    timeout: options.timeoutMs ?? 30_000,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout, stderr };
}

export interface RunningRedis {
  /** Connection to the server. */
  client: Redis;
  stop(): Promise<void>;
}

/**
 * Starts `redis-server` with `args` plus a free loopback port and `dir` as its data directory,
 * and resolves once it logs that it accepts connections. Rejects with the server's output when
 * it exits first, such as on an unknown option.
 */
export async function startRedisServer(
  args: readonly string[],
  dir: string,
): Promise<RunningRedis> {
  const port = await findFreePort();
  const child = spawn(
    "redis-server",
    [...args, "--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  const ready = new Promise<void>((resolve) => {
    const collect = (chunk: string) => {
      output += chunk;
      if (output.includes("Ready to accept connections")) resolve();
    };
    child.stdout.setEncoding("utf8").on("data", collect);
    child.stderr.setEncoding("utf8").on("data", collect);
  });
  const exited = once(child, "exit");
  const failed = exited.then(([code]) => {
    throw new Error(
      `redis-server ${args.join(" ")} exited with code ${code} before accepting connections:\n${output}`,
    );
  });
  failed.catch(() => {});

  await Promise.race([ready, failed]);
  const client = new Redis({ host: "127.0.0.1", port });
  return {
    client,
    async stop() {
      client.disconnect();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}
