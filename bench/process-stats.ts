/**
 * Process-level measurements for the model-scale benchmarks: peak RSS through
 * GNU time, RSS sampling from /proc, the disk's sequential write speed, and
 * a description of the machine. Linux only.
 */

import { spawn } from "node:child_process";
import { open, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import * as native from "../src/native/index.ts";

export const MIB = 2 ** 20;

export interface TimedRun {
  /** Maximum resident set size of the command, from GNU time's `-v` report. */
  peakRssBytes: number;
  wallSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  stdout: string;
  /** The command's own stderr, without GNU time's report. */
  stderr: string;
}

const TIME_BINARY = "/usr/bin/time";

/** Reads one `label: value` line of GNU time's `-v` report. */
function reportField(report: string, label: string): string {
  const line = report.split("\n").find((text) => text.trim().startsWith(`${label}:`));
  if (line === undefined) {
    throw new Error(
      `GNU time's report has no "${label}" line: install Debian's time package (apt-get install -y time)`,
    );
  }
  return line.slice(line.indexOf(`${label}:`) + label.length + 1).trim();
}

/** `h:mm:ss` or `m:ss.ss` to seconds. */
function clockSeconds(text: string): number {
  return text.split(":").reduce((total, part) => total * 60 + Number(part), 0);
}

/**
 * Runs `command args` under `/usr/bin/time -v` and returns its peak RSS and
 * times. Rejects when the command exits with a non-zero status.
 */
export function timeCommand(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    // GNU time writes its report to the file given by -o, which keeps it apart from the command's stderr.
    const reportPath = path.join(os.tmpdir(), `pifa-time-${process.pid}-${Date.now()}.txt`);
    const child = spawn(TIME_BINARY, ["-v", "-o", reportPath, command, ...args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (error) =>
      reject(new Error(`failed to start ${TIME_BINARY}: ${error.message}`, { cause: error })),
    );
    child.on("close", async (code) => {
      const out = Buffer.concat(stdout).toString("utf8");
      const err = Buffer.concat(stderr).toString("utf8");
      try {
        const report = await readFile(reportPath, "utf8");
        await rm(reportPath, { force: true });
        if (code !== 0) {
          throw new Error(
            `${command} ${args.join(" ")} exited with status ${code}: ${err.trim().slice(-2000)}`,
          );
        }
        resolve({
          peakRssBytes: Number(reportField(report, "Maximum resident set size (kbytes)")) * 1024,
          wallSeconds: clockSeconds(
            reportField(report, "Elapsed (wall clock) time (h:mm:ss or m:ss)"),
          ),
          userSeconds: Number(reportField(report, "User time (seconds)")),
          systemSeconds: Number(reportField(report, "System time (seconds)")),
          stdout: out,
          stderr: err,
        });
      } catch (error) {
        reject(error);
      }
    });
  });
}

export interface RssSample {
  /** Current resident set size (`VmRSS`). */
  rssBytes: number;
  /** Peak resident set size since the process started (`VmHWM`). */
  peakBytes: number;
}

/** Reads `VmRSS` and `VmHWM` of a live process from `/proc/PID/status`. */
export async function readRss(pid: number): Promise<RssSample> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
    if (match === null) throw new Error(`/proc/${pid}/status has no ${name} line`);
    return Number(match[1]) * 1024;
  };
  return { rssBytes: field("VmRSS"), peakBytes: field("VmHWM") };
}

/** Kernel clock ticks per second in /proc/PID/stat (USER_HZ, 100 on Linux x86-64 and arm64). */
const USER_HZ = 100;

/** Reads the user plus system CPU seconds of a live process, all threads, from `/proc/PID/stat`. */
export async function readCpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

/**
 * Polls the RSS of a process every `intervalMs` and keeps the largest values
 * seen. `VmHWM` already contains the kernel's exact peak. The samples add
 * the largest `VmRSS` seen while polling.
 */
export class RssMonitor {
  readonly pid: number;
  maxRssBytes = 0;
  peakBytes = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number, intervalMs = 200) {
    this.pid = pid;
    this.#timer = setInterval(() => {
      this.sample().catch(() => undefined);
    }, intervalMs);
  }

  async sample(): Promise<RssSample> {
    const sample = await readRss(this.pid);
    this.maxRssBytes = Math.max(this.maxRssBytes, sample.rssBytes);
    this.peakBytes = Math.max(this.peakBytes, sample.peakBytes);
    return sample;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

export interface DiskSpeed {
  bytes: number;
  seconds: number;
  bytesPerSecond: number;
}

/**
 * Writes `bytes` of incompressible data to a new file in `directory` in 8 MiB
 * writes, then fsyncs it, and returns the sequential write speed including
 * the fsync. The file is removed afterwards.
 */
export async function measureDiskWrite(directory: string, bytes = 2 ** 30): Promise<DiskSpeed> {
  const chunk = Buffer.allocUnsafe(8 * MIB);
  let state = 0x2545f491;
  for (let i = 0; i < chunk.length; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    chunk.writeUInt32LE(state >>> 0, i);
  }
  const file = path.join(directory, `pifa-disk-speed-${process.pid}.bin`);
  const handle = await open(file, "w");
  const started = performance.now();
  try {
    for (let written = 0; written < bytes; written += chunk.length) {
      const length = Math.min(chunk.length, bytes - written);
      await handle.write(chunk, 0, length);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  const seconds = (performance.now() - started) / 1000;
  await rm(file, { force: true });
  return { bytes, seconds, bytesPerSecond: bytes / seconds };
}

/** Describes the CPU, memory, BLAS build, Node version and load averages for the results JSON. */
export function machineInfo(): Record<string, unknown> {
  const info = native.blasInfo();
  return {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    blas: info.config,
    corename: info.corename,
    blasThreads: info.threads,
    node: process.version,
    loadAverage: os.loadavg(),
  };
}
