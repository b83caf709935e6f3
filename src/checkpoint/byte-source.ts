import { type FileHandle, open } from "node:fs/promises";

/**
 * Random-access bytes of one file: a local file, an in-memory buffer, or a
 * storage object read by ranges.
 */
export interface ByteSource {
  /** Total size in bytes. */
  readonly size: bigint | number;
  /**
   * Reads `length` bytes starting at `offset`. Returns fewer bytes only when
   * the source ends first, and never more.
   */
  read(offset: number, length: number): Promise<Buffer>;
}

function assertRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new RangeError(`invalid read offset ${offset}: expected a safe integer >= 0`);
  }
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`invalid read length ${length}: expected a safe integer >= 0`);
  }
}

/** Reads a local file with positional reads, so concurrent reads never share a cursor. */
export class FileByteSource implements ByteSource {
  readonly path: string;
  readonly size: number;
  private readonly handle: FileHandle;

  private constructor(path: string, handle: FileHandle, size: number) {
    this.path = path;
    this.handle = handle;
    this.size = size;
  }

  /** Opens `path` read-only. The size is taken once, at open. */
  static async open(path: string): Promise<FileByteSource> {
    const handle = await open(path, "r");
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) {
        throw new Error(`${path} is not a regular file: pass the path of a .safetensors file`);
      }
      return new FileByteSource(path, handle, stats.size);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    assertRange(offset, length);
    if (length === 0) return Buffer.alloc(0);

    // A buffer of its own (offset 0 in its ArrayBuffer), so float views over it are aligned.
    const buffer = Buffer.allocUnsafeSlow(length);
    let filled = 0;
    while (filled < length) {
      const { bytesRead } = await this.handle.read(
        buffer,
        filled,
        length - filled,
        offset + filled,
      );
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    if (filled < length) {
      // Copy so that the uninitialized tail of `buffer` is never reachable.
      return Buffer.from(buffer.subarray(0, filled));
    }
    return buffer;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Serves reads from bytes already in memory. Reads return views into those
 * bytes, not copies, so an F32 tensor read through it shares their memory.
 */
export class BufferByteSource implements ByteSource {
  readonly size: number;
  private readonly bytes: Buffer;

  constructor(bytes: Uint8Array) {
    this.bytes = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.size = bytes.byteLength;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    assertRange(offset, length);
    const start = Math.min(offset, this.size);
    const end = Math.min(offset + length, this.size);
    return this.bytes.subarray(start, end);
  }
}
