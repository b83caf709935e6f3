/**
 * `pifa jobs list|show|cancel|retry|delete`: operator commands against a
 * running service over HTTP (never Redis directly), for the people on call.
 * The service URL comes from `--url` or `PIFA_URL`; an API key, when the
 * service requires one, from `--api-key` or `PIFA_API_KEY`.
 */

import type { Command } from "commander";

const DEFAULT_URL = "http://127.0.0.1:8080";

interface ClientFlags {
  url?: string;
  apiKey?: string;
  json?: boolean;
}

interface JobView {
  id: string;
  tenant?: string;
  status: string;
  createdAt: string;
  startedAt?: string | null;
  finishedAt?: string | null;
  options?: { method?: string; density?: number };
  progress?: { stage?: string; layersDone?: number; layersTotal?: number; percent?: number };
  error?: { code: string; message: string };
  artifacts?: Array<{ name: string; size: number; sha256: string }>;
}

class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Options shared by every subcommand; commander keeps them on the parent. */
function clientFlags(command: Command): ClientFlags {
  return command.optsWithGlobals<ClientFlags>();
}

async function request(flags: ClientFlags, method: string, path: string): Promise<unknown> {
  const base = flags.url ?? process.env.PIFA_URL ?? DEFAULT_URL;
  const apiKey = flags.apiKey ?? process.env.PIFA_API_KEY;
  const headers: Record<string, string> = { accept: "application/json" };
  if (apiKey) headers.authorization = `Bearer ${apiKey}`;
  let url: URL;
  try {
    // Resolve against the base's path, so a service behind a proxy prefix
    // (http://host/pifa/) keeps it.
    url = new URL(path.replace(/^\//, ""), base.endsWith("/") ? base : `${base}/`);
  } catch {
    throw new ServiceError(
      0,
      "INVALID_URL",
      `invalid service URL "${base}": expected http://host:port or https://host/prefix`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ServiceError(
      0,
      "INVALID_URL",
      `invalid service URL "${base}": the scheme must be http or https`,
    );
  }
  let response: Response;
  try {
    response = await fetch(url, { method, headers });
  } catch (error) {
    throw new ServiceError(
      0,
      "UNREACHABLE",
      `cannot reach the service at ${base}: ${(error as Error).message}; check --url or PIFA_URL`,
    );
  }
  const text = await response.text();
  const body = text === "" ? undefined : (JSON.parse(text) as unknown);
  if (!response.ok) {
    const error = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new ServiceError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `${method} ${path} failed with HTTP ${response.status}`,
    );
  }
  return body;
}

function progressText(job: JobView): string {
  const p = job.progress;
  if (!p || p.layersTotal === undefined) return "";
  return `${p.layersDone ?? 0}/${p.layersTotal} ${p.stage ?? ""}`.trim();
}

function printJob(job: JobView): void {
  const lines = [
    `id          ${job.id}`,
    `tenant      ${job.tenant ?? "-"}`,
    `status      ${job.status}`,
    `method      ${job.options?.method ?? "?"} at density ${job.options?.density ?? "?"}`,
    `created     ${job.createdAt}`,
    `started     ${job.startedAt ?? "-"}`,
    `finished    ${job.finishedAt ?? "-"}`,
    `progress    ${progressText(job) || "-"}`,
  ];
  if (job.error) lines.push(`error       ${job.error.code}: ${job.error.message}`);
  for (const artifact of job.artifacts ?? []) {
    lines.push(`artifact    ${artifact.name} ${artifact.size} bytes sha256 ${artifact.sha256}`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

async function run(flags: ClientFlags, action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ServiceError)) throw error;
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify({ error: { code: error.code, message: error.message, status: error.status } })}\n`,
      );
    } else {
      process.stderr.write(`error ${error.code}: ${error.message}\n`);
    }
    process.exitCode = 1;
  }
}

export function registerJobsCommand(program: Command): void {
  const jobs = program
    .command("jobs")
    .description("inspect and manage jobs of a running service over HTTP")
    .option("--url <url>", `service URL (default PIFA_URL or ${DEFAULT_URL})`)
    .option("--api-key <key>", "bearer API key (default PIFA_API_KEY)")
    .option("--json", "print JSON");

  jobs
    .command("list")
    .description("list jobs, newest first")
    .option(
      "--status <status>",
      "only jobs in this status: queued, running, succeeded, failed, cancelled",
    )
    .option("--limit <n>", "jobs per page (1-200)", "50")
    .option("--after <cursor>", "cursor from the previous page")
    .option("--tenant <name>", "only this tenant's jobs (administrator keys)")
    .action(
      async (
        options: { status?: string; limit: string; after?: string; tenant?: string },
        command: Command,
      ) => {
        const flags = clientFlags(command);
        await run(flags, async () => {
          const query = new URLSearchParams({ limit: options.limit });
          if (options.status) query.set("status", options.status);
          if (options.after) query.set("after", options.after);
          if (options.tenant) query.set("tenant", options.tenant);
          const page = (await request(flags, "GET", `/v1/jobs?${query}`)) as {
            jobs: JobView[];
            nextCursor?: string | null;
          };
          if (flags.json) {
            process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
            return;
          }
          for (const job of page.jobs) {
            const method = `${job.options?.method ?? "?"}@${job.options?.density ?? "?"}`;
            process.stdout.write(
              `${job.id}  ${(job.tenant ?? "-").padEnd(12)}  ${job.status.padEnd(9)}  ${method.padEnd(12)}  ${job.createdAt}  ${progressText(job)}\n`,
            );
          }
          if (page.nextCursor) process.stdout.write(`more: --after ${page.nextCursor}\n`);
        });
      },
    );

  const single = (name: string, description: string, method: string, suffix: string) =>
    jobs
      .command(`${name} <id>`)
      .description(description)
      .action(async (id: string, _options: unknown, command: Command) => {
        const flags = clientFlags(command);
        await run(flags, async () => {
          const job = (await request(
            flags,
            method,
            `/v1/jobs/${encodeURIComponent(id)}${suffix}`,
          )) as JobView | undefined;
          if (flags.json)
            process.stdout.write(`${JSON.stringify(job ?? { id, deleted: true }, null, 2)}\n`);
          else if (job) printJob(job);
          else process.stdout.write(`deleted ${id}\n`);
          if (!flags.json && name === "cancel" && job?.status === "running") {
            process.stdout.write("cancellation requested: the job stops after its current layer\n");
          }
        });
      });

  single("show", "show one job with its progress, error and artifacts", "GET", "");
  single("cancel", "cancel a queued or running job", "POST", "/cancel");
  single(
    "retry",
    "queue a failed or cancelled job again, resuming after its saved layers",
    "POST",
    "/retry",
  );
  single("delete", "delete a job and everything it stored", "DELETE", "");
}
