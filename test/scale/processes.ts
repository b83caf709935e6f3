/**
 * `pifa` CLI child processes for scale-out tests: workers that share the test's Redis and local
 * storage, with their pino JSON log lines parsed as they arrive.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";

export const CLI = join(import.meta.dirname, "..", "..", "bin", "pifa.js");

export interface CliProcess {
  child: ChildProcess;
  /** pino log lines parsed so far. */
  logs: Array<Record<string, unknown>>;
  stderr: () => string;
  /** Resolves with the exit code once the output streams closed. */
  exit: Promise<number | null>;
}

/** Starts the CLI with only the given environment plus PATH and HOME, and collects its output. */
export function startCli(args: string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: Array<Record<string, unknown>> = [];
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
    let end = stdout.indexOf("\n");
    while (end >= 0) {
      const line = stdout.slice(0, end);
      stdout = stdout.slice(end + 1);
      if (line.startsWith("{")) logs.push(JSON.parse(line));
      end = stdout.indexOf("\n");
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exit = once(child, "close").then(([code]) => code as number | null);
  return { child, logs, stderr: () => stderr, exit };
}

/** Resolves with the first log line that matches, or rejects when the process exits first. */
export async function waitForLog(
  running: CliProcess,
  match: (line: Record<string, unknown>) => boolean,
  what: string,
): Promise<Record<string, unknown>> {
  for (;;) {
    const line = running.logs.find(match);
    if (line) return line;
    const exited = await Promise.race([
      running.exit.then(() => true),
      new Promise((resolve) => setTimeout(resolve, 50, false)),
    ]);
    if (exited) throw new Error(`process exited before logging ${what}: ${running.stderr()}`);
  }
}

/** Environment of a `pifa worker` that shares the given Redis, storage root and queue prefix. */
export function workerEnv(
  redisUrl: string,
  storageRoot: string,
  prefix: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    PIFA_DATA_DIR: storageRoot,
    PIFA_STORAGE_URL: `file://${storageRoot}`,
    PIFA_QUEUE_PREFIX: prefix,
    PIFA_BLAS_THREADS: "1",
    LOG_LEVEL: "info",
    ...extra,
  };
}

/** Stops a process with SIGKILL unless it already exited; for test cleanup only. */
export async function killIfRunning(running: CliProcess): Promise<void> {
  if (running.child.exitCode === null && running.child.signalCode === null) {
    running.child.kill("SIGKILL");
  }
  await running.exit;
}
