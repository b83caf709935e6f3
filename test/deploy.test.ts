/**
 * Checks the Dockerfiles, .dockerignore and docker-compose.yml without a Docker engine: their
 * structure, their agreement with the service's code and configuration, and the health-check
 * and entry-point commands run against real processes on loopback.
 */

import { constants } from "node:fs";
import { access, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPENAPI_PATH } from "../src/api/routes/docs.ts";
import { type RunningService, startService } from "../src/cli/service.ts";
import { loadConfig } from "../src/config.ts";
import { ADDON_PATH } from "../src/native/load.ts";
import { findFreePort } from "../src/redis/free-port.ts";
import { checkEvictionPolicy } from "../src/redis/index.ts";
import { parseStorageUrl } from "../src/storage/url.ts";
import {
  type ComposeFile,
  type ComposeService,
  containerPorts,
  dependencies,
  environmentOf,
  loadCompose,
  namedVolumes,
  uncommentService,
  validateComposeSchema,
} from "./deploy/compose.ts";
import {
  copyPaths,
  type DockerStage,
  execForm,
  healthcheckCommand,
  instructionsOf,
  type ParsedDockerfile,
  parseDockerfile,
  stageEnv,
} from "./deploy/dockerfile.ts";
import { isIgnored, loadDockerignore } from "./deploy/dockerignore.ts";
import { importedPackages } from "./deploy/imports.ts";
import { runCommand, startRedisServer } from "./deploy/processes.ts";
import { startRedis, type TestRedis } from "./helpers/redis.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.gpu"] as const;
const VALID_CONDITIONS = ["service_started", "service_healthy", "service_completed_successfully"];

function lastStage(dockerfile: ParsedDockerfile): DockerStage {
  const stage = dockerfile.stages[dockerfile.stages.length - 1];
  if (stage === undefined) throw new Error("Dockerfile without stages");
  return stage;
}

function singleInstruction(stage: DockerStage, keyword: string) {
  const found = instructionsOf(stage, keyword);
  const instruction = found[found.length - 1];
  if (instruction === undefined) {
    throw new Error(`Stage ${stage.name ?? stage.image} has no ${keyword} instruction.`);
  }
  return instruction;
}

/** Returns the shell text of every RUN instruction of a stage, joined. */
function runText(stage: DockerStage): string {
  return instructionsOf(stage, "RUN")
    .map((instruction) => instruction.content)
    .join("\n");
}

/**
 * Returns the absolute image paths that the COPY instructions of a stage write, resolving each
 * destination against the WORKDIR in effect.
 */
function copiedImagePaths(stage: DockerStage): string[] {
  const paths: string[] = [];
  let workdir = "/";
  for (const instruction of stage.instructions) {
    if (instruction.keyword === "WORKDIR") {
      workdir = posix.resolve(workdir, instruction.args[0] ?? "/");
    } else if (instruction.keyword === "COPY") {
      const { sources, destination } = copyPaths(instruction);
      const target = posix.resolve(workdir, destination);
      for (const source of sources) {
        const intoDirectory = destination.endsWith("/") || sources.length > 1;
        paths.push(intoDirectory ? posix.join(target, posix.basename(source)) : target);
      }
    }
  }
  return paths;
}

function isRootUser(user: string): boolean {
  const name = user.split(":")[0] ?? "";
  return name === "root" || name === "0" || name === "";
}

describe.each(DOCKERFILES)("%s", (path) => {
  let dockerfile: ParsedDockerfile;

  beforeAll(async () => {
    dockerfile = await parseDockerfile(join(ROOT, path));
  });

  it("builds in a named stage before the runtime stage", () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    const build = dockerfile.stages.find((stage) => stage.name === "build");
    expect(build).toBeDefined();
    expect(runText(build as DockerStage)).toMatch(/\bnpm ci\b/);
    expect(runText(build as DockerStage)).toMatch(/\bnpm prune --omit=dev\b/);
    expect(lastStage(dockerfile).name).toBe("runtime");
  });

  it("builds the addon against local Node headers", () => {
    const build = dockerfile.stages.find((stage) => stage.name === "build") as DockerStage;

    expect(stageEnv(build).get("npm_config_nodedir")).toBe("/usr/local");
    expect(runText(build)).toMatch(/\blibopenblas-dev\b/);
    expect(runText(build)).toMatch(/\bliblapacke-dev\b/);
  });

  it("installs only runtime BLAS packages in the runtime stage", () => {
    const install = runText(lastStage(dockerfile));

    expect(install).toMatch(/\blibopenblas0-pthread\b/);
    expect(install).toMatch(/\bliblapacke\b/);
    expect(install).not.toMatch(/-dev\b/);
  });

  it("runs as a non-root user", () => {
    const user = singleInstruction(lastStage(dockerfile), "USER").args[0] ?? "";

    expect(isRootUser(user)).toBe(false);
  });

  it("copies only files that reach the build context", async () => {
    const rules = await loadDockerignore(join(ROOT, ".dockerignore"));
    const copies = dockerfile.stages.flatMap((stage) =>
      instructionsOf(stage, "COPY").filter((instruction) => !instruction.flags.has("from")),
    );
    expect(copies.length).toBeGreaterThan(0);

    for (const instruction of copies) {
      for (const source of copyPaths(instruction).sources) {
        const where = `COPY ${source} (line ${instruction.line})`;
        await expect(stat(join(ROOT, source)), where).resolves.toBeDefined();
        expect(isIgnored(rules, source), `${where} is excluded by .dockerignore`).toBe(false);
      }
    }
  });

  it("ships every file the service reads at run time", async () => {
    const packageJson = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      bin: Record<string, string>;
    };
    const required = [
      // package.json carries "type": "module", which makes Node load bin/pifa.js as ESM.
      "package.json",
      "node_modules",
      relative(ROOT, resolve(ROOT, "src/native", ADDON_PATH)),
      relative(ROOT, OPENAPI_PATH),
      posix.normalize(packageJson.bin.pifa ?? "bin/pifa.js"),
      "src",
      "workers",
    ];
    const shipped = copiedImagePaths(lastStage(dockerfile));
    const workdir = singleInstruction(lastStage(dockerfile), "WORKDIR").args[0] ?? "/";

    for (const file of required) {
      const imagePath = posix.join(workdir, file);
      const covered = shipped.some(
        (path) => path === imagePath || imagePath.startsWith(`${path}/`),
      );
      expect(covered, `${imagePath} is not copied into the runtime stage`).toBe(true);
    }
  });

  it("starts through an executable entry point", async () => {
    const runtime = lastStage(dockerfile);
    const [entrypoint] = execForm(singleInstruction(runtime, "ENTRYPOINT").content) ?? [];
    const copy = instructionsOf(runtime, "COPY").find((instruction) =>
      copyPaths(instruction).destination.endsWith(`/${entrypoint}`),
    );
    expect(copy, `no COPY writes the entry point ${entrypoint}`).toBeDefined();

    const [script = ""] = copyPaths(copy as NonNullable<typeof copy>).sources;
    await expect(access(join(ROOT, script), constants.X_OK)).resolves.toBeUndefined();
    expect(await readFile(join(ROOT, script), "utf8")).toMatch(/^#!\/bin\/sh\n/);
  });
});

describe("docker/Dockerfile", () => {
  let dockerfile: ParsedDockerfile;
  let runtime: DockerStage;

  beforeAll(async () => {
    dockerfile = await parseDockerfile(join(ROOT, "docker/Dockerfile"));
    runtime = lastStage(dockerfile);
  });

  it("builds on node:20-bookworm and runs on the slim variant", () => {
    expect(dockerfile.stages[0]?.image).toBe("node:20-bookworm");
    expect(runtime.image).toBe("node:20-bookworm-slim");
  });

  it("runs the API by default", () => {
    expect(execForm(singleInstruction(runtime, "CMD").content)).toEqual(["pifa", "api"]);
  });

  it("exposes the port the service listens on", () => {
    const env = stageEnv(runtime);
    const exposed = singleInstruction(runtime, "EXPOSE").args;

    expect(exposed).toEqual([env.get("PORT")]);
    expect(loadConfig(Object.fromEntries(env)).port).toBe(Number(exposed[0]));
    expect(env.get("HOST")).toBe("0.0.0.0");
  });

  it("keeps data and scratch space on the volume", () => {
    const env = stageEnv(runtime);

    expect(execForm(singleInstruction(runtime, "VOLUME").content)).toEqual(["/data"]);
    expect(env.get("PIFA_DATA_DIR")).toBe("/data");
    expect(env.get("TMPDIR")?.startsWith("/data/")).toBe(true);
  });

  it("probes /livez without curl", () => {
    const command = healthcheckCommand(singleInstruction(runtime, "HEALTHCHECK"));

    expect(command?.[0]).toBe("node");
    expect(command?.join(" ")).toContain("/livez");
    expect(runText(runtime)).not.toMatch(/\b(?:curl|wget)\b/);
  });

  it("installs redis-server for pifa serve", () => {
    expect(runText(runtime)).toMatch(/\bredis-server\b/);
  });
});

describe("docker/Dockerfile.gpu", () => {
  let dockerfile: ParsedDockerfile;
  let runtime: DockerStage;

  beforeAll(async () => {
    dockerfile = await parseDockerfile(join(ROOT, "docker/Dockerfile.gpu"));
    runtime = lastStage(dockerfile);
  });

  it("builds and runs on the CUDA runtime base", () => {
    const build = dockerfile.stages.find((stage) => stage.name === "build");

    expect(build?.image).toMatch(/^nvidia\/cuda:[\d.]+-runtime-ubuntu/);
    expect(runtime.image).toBe(build?.image);
  });

  it("runs the worker without an HTTP health check", () => {
    expect(execForm(singleInstruction(runtime, "CMD").content)).toEqual(["pifa", "worker"]);
    expect(healthcheckCommand(singleInstruction(runtime, "HEALTHCHECK"))).toBeUndefined();
    expect(instructionsOf(runtime, "EXPOSE")).toEqual([]);
  });
});

describe(".dockerignore", () => {
  it("keeps host builds and secrets out of the context", async () => {
    const rules = await loadDockerignore(join(ROOT, ".dockerignore"));

    for (const path of [
      "node_modules/tsx/package.json",
      "build/Release/pifa_native.node",
      ".env",
      ".git/HEAD",
      "data/redis/appendonly.aof",
    ]) {
      expect(isIgnored(rules, path), path).toBe(true);
    }
    for (const path of [
      "src/cli/main.ts",
      "native/addon.cc",
      "package-lock.json",
      "openapi.yaml",
    ]) {
      expect(isIgnored(rules, path), path).toBe(false);
    }
  });
});

describe("runtime dependencies", () => {
  it("lists every imported package under dependencies", async () => {
    const packageJson = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const imported = await importedPackages(ROOT, ["bin", "src", "workers"]);
    expect(imported.has("tsx")).toBe(true);

    // `npm prune --omit=dev` removes everything else, so such an import fails in the image.
    for (const [name, files] of imported) {
      expect(
        Object.hasOwn(packageJson.dependencies, name),
        `${name} (imported by ${files.join(", ")}) is not in dependencies`,
      ).toBe(true);
    }
  });
});

describe("docker-compose.yml", () => {
  let text: string;
  let compose: ComposeFile;
  let services: Record<string, ComposeService>;

  beforeAll(async () => {
    text = await readFile(join(ROOT, "docker-compose.yml"), "utf8");
    compose = loadCompose(text);
    services = compose.services;
  });

  function service(name: string): ComposeService {
    const found = services[name];
    if (found === undefined) throw new Error(`docker-compose.yml has no service "${name}".`);
    return found;
  }

  /** Returns whether the service's container reports health, from Compose or its image. */
  async function hasHealthcheck(candidate: ComposeService): Promise<boolean> {
    if (candidate.healthcheck?.disable) return false;
    if (candidate.healthcheck?.test !== undefined) return true;
    if (typeof candidate.build !== "object" || candidate.build.dockerfile === undefined) {
      return false;
    }
    const built = await parseDockerfile(join(ROOT, candidate.build.dockerfile));
    const check = instructionsOf(lastStage(built), "HEALTHCHECK")[0];
    return check !== undefined && healthcheckCommand(check) !== undefined;
  }

  it("matches the Compose specification schema", () => {
    expect(validateComposeSchema(compose)).toEqual([]);
  });

  it("waits only for existing services with valid conditions", async () => {
    for (const [name, definition] of Object.entries(services)) {
      for (const [target, condition] of dependencies(definition)) {
        const where = `${name} depends_on ${target}`;
        expect(Object.hasOwn(services, target), `${where}: no such service`).toBe(true);
        expect(VALID_CONDITIONS, where).toContain(condition);
        if (condition === "service_healthy") {
          expect(await hasHealthcheck(service(target)), `${where}: no health check`).toBe(true);
        }
        if (condition === "service_completed_successfully") {
          expect(service(target).restart ?? "no", `${where}: restarts`).toBe("no");
        }
      }
    }
  });

  it("has health checks on the long-running services", async () => {
    for (const name of ["redis", "minio", "api"]) {
      expect(await hasHealthcheck(service(name)), name).toBe(true);
    }
    // The worker serves no HTTP, so the image's /livez check must be switched off.
    expect(service("worker").healthcheck?.disable).toBe(true);
  });

  it("declares every named volume it mounts", () => {
    const declared = Object.keys(compose.volumes ?? {});
    const mounted = Object.values(services).flatMap(namedVolumes);

    for (const volume of mounted) expect(declared).toContain(volume);
    for (const volume of declared) expect(mounted).toContain(volume);
  });

  it("lets the worker scale", () => {
    const worker = service("worker");

    expect(worker.container_name).toBeUndefined();
    expect(worker.ports).toBeUndefined();
    expect(worker.command).toEqual(["pifa", "worker"]);
    expect(worker.image).toBe(service("api").image);
    expect(worker.build).toEqual(service("api").build);
  });

  it("runs Redis with append-only persistence and noeviction", () => {
    const command = service("redis").command as string[];

    expect(command[0]).toBe("redis-server");
    expect(command[command.indexOf("--appendonly") + 1]).toBe("yes");
    expect(command[command.indexOf("--maxmemory-policy") + 1]).toBe("noeviction");
  });

  it("starts a Redis that the service accepts", async () => {
    const [, ...args] = service("redis").command as string[];
    const dir = await mkdtemp(join(tmpdir(), "pifa-deploy-redis-"));
    const redis = await startRedisServer(args, dir);
    try {
      await expect(checkEvictionPolicy(redis.client)).resolves.toBe("noeviction");
      expect(await redis.client.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
    } finally {
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("configures the API for its Redis and bucket", () => {
    const env = environmentOf(service("api"));
    const config = loadConfig(Object.fromEntries(env));

    expect(config.redis.mode).toBe("external");
    expect(new URL(env.get("REDIS_URL") ?? "").hostname).toBe("redis");
    expect(config.storage.kind).toBe("s3");
    expect(new URL(env.get("AWS_ENDPOINT_URL_S3") ?? "").host).toBe("minio:9000");

    const location = parseStorageUrl(env.get("PIFA_STORAGE_URL") ?? "");
    const bucketCommand = (service("minio-bucket").command as string[]).join(" ");
    expect(location).toMatchObject({ kind: "s3", bucket: "pifa" });
    expect(bucketCommand).toMatch(/\bmc mb --ignore-existing pifa\/pifa$/);
  });

  it("gives MinIO and the service the same credentials", () => {
    const custom = loadCompose(text, {
      MINIO_ROOT_USER: "operator",
      MINIO_ROOT_PASSWORD: "a-long-secret",
    }).services;

    for (const name of ["api", "worker"]) {
      const env = environmentOf(custom[name] as ComposeService);
      expect(env.get("AWS_ACCESS_KEY_ID"), name).toBe("operator");
      expect(env.get("AWS_SECRET_ACCESS_KEY"), name).toBe("a-long-secret");
    }
    for (const name of ["minio", "minio-bucket"]) {
      const env = environmentOf(custom[name] as ComposeService);
      expect(env.get("MINIO_ROOT_USER"), name).toBe("operator");
      expect(env.get("MINIO_ROOT_PASSWORD"), name).toBe("a-long-secret");
    }
  });

  it("shares queue and storage settings between API and workers", () => {
    const api = environmentOf(service("api"));
    const worker = environmentOf(service("worker"));

    for (const name of [
      "REDIS_URL",
      "PIFA_STORAGE_URL",
      "PIFA_QUEUE_PREFIX",
      "AWS_ENDPOINT_URL_S3",
      "AWS_ACCESS_KEY_ID",
      "AWS_SECRET_ACCESS_KEY",
    ]) {
      expect(worker.get(name), name).toBe(api.get(name));
    }
    expect(loadConfig(Object.fromEntries(worker)).queuePrefix).toBe("{pifa}");
  });

  it("publishes the exposed port on loopback by default", async () => {
    const image = await parseDockerfile(join(ROOT, "docker/Dockerfile"));
    const exposed = singleInstruction(lastStage(image), "EXPOSE").args.map(Number);

    expect(containerPorts(service("api"))).toEqual(exposed);
    expect(service("api").ports).toEqual([`127.0.0.1:8080:${exposed[0]}`]);
  });

  it("pins every image it pulls", () => {
    for (const [name, definition] of Object.entries(services)) {
      if (definition.build !== undefined) continue;
      const tag = /:([^/:]+)$/.exec(definition.image ?? "")?.[1];
      expect(tag, `${name} image ${definition.image} has no tag`).toBeDefined();
      expect(tag, name).not.toBe("latest");
    }
  });

  it("keeps a GPU worker that validates when uncommented", async () => {
    const withGpu = loadCompose(uncommentService(text, "worker-gpu"));
    const gpu = withGpu.services["worker-gpu"] as ComposeService;

    expect(validateComposeSchema(withGpu)).toEqual([]);
    expect(gpu.deploy?.resources?.reservations?.devices).toEqual([
      { driver: "nvidia", count: 1, capabilities: ["gpu"] },
    ]);
    expect(gpu.container_name).toBeUndefined();
    expect(gpu.ports).toBeUndefined();
    expect(environmentOf(gpu).get("REDIS_URL")).toBe(
      environmentOf(service("worker")).get("REDIS_URL"),
    );
    expect(gpu.build).toMatchObject({ dockerfile: "docker/Dockerfile.gpu" });
    await expect(stat(join(ROOT, "docker/Dockerfile.gpu"))).resolves.toBeDefined();
  });
});

describe("docker-compose config", () => {
  let available = false;

  beforeAll(async () => {
    available = await runCommand("docker-compose", ["version", "--short"]).then(
      (result) => result.code === 0,
      () => false,
    );
    if (!available) {
      console.warn(
        "Skipping the docker-compose checks: the docker-compose executable (Debian package docker-compose) is not installed.",
      );
    }
  });

  // The variables the file interpolates are removed, so that the defaults are what is checked.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(MINIO_|PIFA_|LOG_LEVEL$)/.test(name)),
  );

  it("accepts the file", async ({ skip }) => {
    if (!available) skip();
    const result = await runCommand(
      "docker-compose",
      ["--project-directory", ROOT, "-f", "docker-compose.yml", "config", "--quiet"],
      { cwd: ROOT, env },
    );

    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
  });

  it("accepts the file with the GPU worker", async ({ skip }) => {
    if (!available) skip();
    const dir = await mkdtemp(join(tmpdir(), "pifa-deploy-compose-"));
    try {
      const file = join(dir, "docker-compose.gpu.yml");
      const text = await readFile(join(ROOT, "docker-compose.yml"), "utf8");
      await writeFile(file, uncommentService(text, "worker-gpu"));
      const result = await runCommand(
        "docker-compose",
        ["--project-directory", ROOT, "-f", file, "config", "--services"],
        { cwd: ROOT, env },
      );

      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout.split("\n")).toContain("worker-gpu");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("health check commands", () => {
  let redis: TestRedis;
  let dataDir: string;
  let service: RunningService | undefined;
  let port: number;

  beforeAll(async () => {
    redis = await startRedis();
    dataDir = await mkdtemp(join(tmpdir(), "pifa-deploy-api-"));
    port = await findFreePort();
    const config = loadConfig({
      HOST: "127.0.0.1",
      PORT: String(port),
      REDIS_URL: redis.url,
      PIFA_DATA_DIR: dataDir,
      LOG_LEVEL: "silent",
    });
    service = await startService(config, { api: true, worker: false }, pino({ level: "silent" }));
  });

  afterAll(async () => {
    await service?.stop();
    await redis?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  async function runCheck(command: readonly string[]): Promise<number | null> {
    const [executable = "", ...args] = command;
    // The check runs `node` from PATH in the image; here it is the Node.js running the tests.
    const program = executable === "node" ? process.execPath : executable;
    const result = await runCommand(program, args, { env: { ...process.env, PORT: String(port) } });
    return result.code;
  }

  it("pass against a running API and fail once it stops", async () => {
    const image = await parseDockerfile(join(ROOT, "docker/Dockerfile"));
    const liveness = healthcheckCommand(singleInstruction(lastStage(image), "HEALTHCHECK")) ?? [];
    const compose = loadCompose(await readFile(join(ROOT, "docker-compose.yml"), "utf8"));
    const readiness = compose.services.api?.healthcheck?.test as string[];
    expect(readiness[0]).toBe("CMD");
    const readinessCommand = readiness.slice(1);

    expect(await runCheck(liveness)).toBe(0);
    expect(await runCheck(readinessCommand)).toBe(0);

    await service?.stop();
    service = undefined;
    expect(await runCheck(liveness)).toBe(1);
    expect(await runCheck(readinessCommand)).toBe(1);
  });
});

describe("docker/entrypoint.sh", () => {
  const script = join(ROOT, "docker/entrypoint.sh");
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "pifa-deploy-entrypoint-"));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("creates TMPDIR and runs the command", async () => {
    const scratch = join(dir, "data", "tmp");
    const result = await runCommand(
      "sh",
      [script, process.execPath, "-e", "process.stdout.write(process.env.TMPDIR)"],
      { env: { ...process.env, TMPDIR: scratch } },
    );

    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(scratch);
    expect((await stat(scratch)).isDirectory()).toBe(true);
  });

  it("exits with an error when TMPDIR cannot be created", async () => {
    const file = join(dir, "not-a-directory");
    await writeFile(file, "");
    const result = await runCommand("sh", [script, "true"], {
      env: { ...process.env, TMPDIR: join(file, "tmp") },
    });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`TMPDIR=${join(file, "tmp")} is not writable`);
  });
});
