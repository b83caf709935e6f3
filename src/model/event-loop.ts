/**
 * Cooperative scheduling for long JS loops over tensors. Native BLAS calls
 * run off the event loop, but per-element work (norms, rotary embeddings,
 * softmax, SiLU) runs on it. Such loops check a time slice and let other
 * callbacks run when it is spent.
 */

import { performance } from "node:perf_hooks";

/** Maximum time, in milliseconds, that a tensor loop runs before it yields. */
export const EVENT_LOOP_SLICE_MS = 20;

export class TimeSlice {
  private deadline = performance.now() + EVENT_LOOP_SLICE_MS;

  /** Returns whether the slice is spent. It is cheap enough to call once per row. */
  due(): boolean {
    return performance.now() >= this.deadline;
  }

  /** Lets pending I/O and timers run, then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.deadline = performance.now() + EVENT_LOOP_SLICE_MS;
  }
}
