/**
 * FIFO serialization of native calls. Each BLAS call uses every configured
 * BLAS thread, so running two at once would oversubscribe the CPU, and each
 * running call also occupies one of libuv's 4 default pool threads that file
 * I/O needs.
 */
export class SerialQueue {
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;

  /** Tasks submitted and not yet settled, the running one included. */
  get pending(): number {
    return this.#pending;
  }

  /** Starts `task` after every earlier task has settled; returns its result. */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.#pending += 1;
    const result = this.#tail.then(task).finally(() => {
      this.#pending -= 1;
    });
    // A failed task must not stop later ones.
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
