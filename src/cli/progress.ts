/**
 * Progress output for long commands: a redrawn bar on a terminal, one plain
 * line per update otherwise (CI logs, pipes), and nothing with `--json`.
 */

export interface ProgressReporter {
  update(done: number, total: number, label: string): void;
  finish(): void;
}

const BAR_WIDTH = 30;

export function createProgress(stream: NodeJS.WriteStream, enabled: boolean): ProgressReporter {
  if (!enabled) return { update() {}, finish() {} };
  if (!stream.isTTY) {
    return {
      update(done, total, label) {
        stream.write(`[${done}/${total}] ${label}\n`);
      },
      finish() {},
    };
  }
  const started = Date.now();
  let drawn = false;
  return {
    update(done, total, label) {
      const fraction = total === 0 ? 1 : done / total;
      const filled = Math.round(fraction * BAR_WIDTH);
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
      const width = stream.columns ?? 100;
      const line = `[${bar}] ${done}/${total} ${seconds}s ${label}`.slice(0, width - 1);
      stream.write(`\r\x1b[2K${line}`);
      drawn = true;
    },
    finish() {
      if (drawn) stream.write("\n");
    },
  };
}
