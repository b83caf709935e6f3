/**
 * The main job end to end, as an ML pipeline runs it: start `pifa serve` with
 * embedded defaults, submit the stories260K fixture over HTTP, follow the
 * job's server-sent events, download and verify the artifacts, and print the
 * report summary.
 *
 * Usage: npx tsx scripts/demo.ts [--method mpifa] [--density 0.5] [--out demo-output]
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { openAsBlob } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    method: { type: "string", default: "mpifa" },
    density: { type: "string", default: "0.5" },
    out: { type: "string", default: "demo-output" },
  },
});
const root = path.resolve(import.meta.dirname, "..");
const fixture = path.join(root, "test/fixtures/stories260K");
const data = path.join(root, "test/fixtures/tinystories");
const outDir = path.resolve(values.out ?? "demo-output");

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitReady(base: string, service: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (service.exitCode !== null)
      throw new Error(`pifa serve exited with code ${service.exitCode}`);
    const ok = await fetch(`${base}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error("pifa serve did not become ready within 60 s");
}

/** Reads server-sent events until the job reaches a final status. */
async function follow(base: string, id: string): Promise<string> {
  const response = await fetch(`${base}/v1/jobs/${id}/events`);
  if (!response.ok || !response.body)
    throw new Error(`events request failed: HTTP ${response.status}`);
  const decoder = new TextDecoder();
  let buffer = "";
  let status = "queued";
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let boundary = buffer.indexOf("\n\n");
    while (boundary >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf("\n\n");
      const type = /^event: (.*)$/m.exec(block)?.[1];
      const payload = /^data: (.*)$/m.exec(block)?.[1];
      if (!type || !payload) continue;
      const event = JSON.parse(payload);
      if (type === "progress") {
        const layer = event.layer ? ` ${event.layer}` : "";
        console.log(`  ${event.stage} ${event.layersDone}/${event.layersTotal}${layer}`);
      } else if (type === "status") {
        status = event.status;
        console.log(
          `  status ${status}${event.error ? `: ${event.error.code} ${event.error.message}` : ""}`,
        );
      }
    }
  }
  return status;
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const dataDir = path.join(outDir, "service-data");
await mkdir(outDir, { recursive: true });
console.log(`starting pifa serve on ${base} (data in ${dataDir})`);
const service = spawn(process.execPath, [path.join(root, "bin/pifa.js"), "serve"], {
  env: {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    PIFA_DATA_DIR: dataDir,
    LOG_LEVEL: "warn",
  },
  stdio: ["ignore", "inherit", "inherit"],
});

try {
  await waitReady(base, service);
  const options = { method: values.method, density: Number(values.density) };
  const form = new FormData();
  form.append("options", JSON.stringify(options));
  form.append("config", await openAsBlob(path.join(fixture, "config.json")), "config.json");
  form.append(
    "checkpoint",
    await openAsBlob(path.join(fixture, "model.safetensors")),
    "model.safetensors",
  );
  if (["svd-llm", "m", "mpifa"].includes(options.method ?? "")) {
    form.append(
      "calibration",
      await openAsBlob(path.join(data, "calibration-stories260K.json")),
      "calibration.json",
    );
  }
  form.append(
    "evaluation",
    await openAsBlob(path.join(data, "eval-stories260K.json")),
    "evaluation.json",
  );

  console.log(`submitting stories260K with ${JSON.stringify(options)}`);
  const created = await fetch(`${base}/v1/jobs`, { method: "POST", body: form });
  const job = (await created.json()) as { id: string };
  if (created.status !== 202)
    throw new Error(`submit failed: HTTP ${created.status} ${JSON.stringify(job)}`);
  console.log(`job ${job.id} accepted (${created.headers.get("location")})`);

  const status = await follow(base, job.id);
  if (status !== "succeeded") throw new Error(`job ended ${status}`);

  const listing = (await (await fetch(`${base}/v1/jobs/${job.id}/artifacts`)).json()) as {
    artifacts: Array<{ name: string; size: number; sha256: string }>;
  };
  for (const artifact of listing.artifacts as Array<{
    name: string;
    size: number;
    sha256: string;
  }>) {
    const response = await fetch(
      `${base}/v1/jobs/${job.id}/artifacts/${encodeURIComponent(artifact.name)}`,
    );
    const bytes = Buffer.from(await response.arrayBuffer());
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== artifact.sha256) throw new Error(`${artifact.name}: sha256 mismatch`);
    await writeFile(path.join(outDir, artifact.name), bytes);
    console.log(`downloaded ${artifact.name} (${bytes.length} bytes, sha256 verified)`);
  }

  const report = JSON.parse(await readFile(path.join(outDir, "report.json"), "utf8"));
  const { totals, evaluation } = report;
  console.log(
    `\n${options.method} at density ${options.density}: ${totals.layers} layers, achieved density ${totals.density.toFixed(4)}, ` +
      `${totals.bytes_before} -> ${totals.bytes_after} bytes, ${totals.seconds.toFixed(1)} s`,
  );
  if (evaluation) {
    console.log(
      `perplexity on ${evaluation.tokens} held-out tokens: original ${evaluation.original.perplexity.toFixed(3)}, ` +
        `compressed ${evaluation.compressed.perplexity.toFixed(3)}`,
    );
  }
  console.log(`artifact in ${outDir}`);
} finally {
  service.kill("SIGTERM");
  await new Promise((resolve) => service.once("exit", resolve));
}
