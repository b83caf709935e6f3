/**
 * Reader for one safetensors file. The header is read with two small reads
 * (the 8-byte length prefix, then N header bytes) and each tensor with one
 * read of exactly its byte length, so the file is never read whole.
 */
import type { ByteSource } from "./byte-source.ts";
import { CheckpointError, quote } from "./errors.ts";
import { assertFloatDtype, decodeFloat32 } from "./float-codec.ts";
import {
  DEFAULT_HEADER_LIMITS,
  type HeaderLimits,
  parseHeader,
  type TensorInfo,
} from "./header.ts";

export type OpenSafetensorsOptions = Partial<HeaderLimits>;

export class SafetensorsFile {
  readonly source: ByteSource;
  /** String metadata from `__metadata__`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in data-section order. */
  readonly tensors: readonly TensorInfo[];
  /** N, the header length in bytes after the 8-byte prefix. */
  readonly headerLength: number;
  private readonly byName: Map<string, TensorInfo>;

  constructor(
    source: ByteSource,
    headerLength: number,
    metadata: Readonly<Record<string, string>>,
    tensors: readonly TensorInfo[],
  ) {
    this.source = source;
    this.headerLength = headerLength;
    this.metadata = metadata;
    this.tensors = tensors;
    this.byName = new Map(tensors.map((tensor) => [tensor.name, tensor]));
  }

  getTensor(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  hasTensor(name: string): boolean {
    return this.byName.has(name);
  }

  private resolve(tensor: TensorInfo | string): TensorInfo {
    const name = typeof tensor === "string" ? tensor : tensor.name;
    const info = this.byName.get(name);
    if (info === undefined || (typeof tensor !== "string" && info !== tensor)) {
      throw new RangeError(
        `tensor ${quote(name)} is not in this safetensors file: pass a name or TensorInfo from its tensors list`,
      );
    }
    return info;
  }

  /** Reads the raw little-endian bytes of one tensor, allocating exactly its byte length. */
  async readTensorBytes(tensor: TensorInfo | string): Promise<Buffer> {
    const info = this.resolve(tensor);
    if (info.byteLength === 0) return Buffer.alloc(0);
    // subarray guards against a source that breaks its contract by returning extra bytes.
    const bytes = (await this.source.read(info.byteOffset, info.byteLength)).subarray(
      0,
      info.byteLength,
    );
    if (bytes.byteLength !== info.byteLength) {
      throw new CheckpointError(
        "DATA_TRUNCATED",
        `tensor ${quote(info.name)}: read ${bytes.byteLength} of ${info.byteLength} bytes at file offset ${info.byteOffset}: the file is shorter than when it was opened, so upload it again`,
      );
    }
    return bytes;
  }

  /**
   * Reads one F32, F16 or BF16 tensor as float32 values in row-major order.
   * Other dtypes raise NOT_FLOAT_DTYPE before any read.
   */
  async readTensorFloat32(tensor: TensorInfo | string): Promise<Float32Array> {
    const info = this.resolve(tensor);
    assertFloatDtype(info.dtype, info.name);
    return decodeFloat32(await this.readTensorBytes(info), info.dtype, info.name);
  }
}

function sourceSize(source: ByteSource): bigint {
  const { size } = source;
  if (typeof size === "bigint" ? size < 0n : !Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`byte source size ${size} is invalid: expected an integer >= 0`);
  }
  return BigInt(size);
}

/** Reads and validates the header of a safetensors file; tensor data stays unread. */
export async function openSafetensors(
  source: ByteSource,
  options: OpenSafetensorsOptions = {},
): Promise<SafetensorsFile> {
  const limits: HeaderLimits = { ...DEFAULT_HEADER_LIMITS, ...options };
  const size = sourceSize(source);

  if (size < 8n) {
    throw new CheckpointError(
      "HEADER_TRUNCATED",
      `file has ${size} bytes, fewer than the 8-byte header length prefix: the upload is incomplete or not a safetensors file`,
    );
  }
  const prefix = await source.read(0, 8);
  if (prefix.byteLength < 8) {
    throw new CheckpointError(
      "HEADER_TRUNCATED",
      `read ${prefix.byteLength} of the 8 header length bytes: the file is shorter than its reported size of ${size} bytes`,
    );
  }

  const declared = prefix.readBigUInt64LE(0);
  if (declared > BigInt(limits.maxHeaderBytes)) {
    throw new CheckpointError(
      "HEADER_TOO_LARGE",
      `header length prefix declares ${declared} bytes, above the limit of ${limits.maxHeaderBytes}: the file is corrupt or not a safetensors file`,
    );
  }
  if (declared > size - 8n) {
    throw new CheckpointError(
      "HEADER_TOO_LARGE",
      `header length prefix declares ${declared} bytes but only ${size - 8n} bytes follow it: the upload is incomplete or not a safetensors file`,
    );
  }

  const headerLength = Number(declared);
  const headerBytes = (await source.read(8, headerLength)).subarray(0, headerLength);
  if (headerBytes.byteLength < headerLength) {
    throw new CheckpointError(
      "HEADER_TRUNCATED",
      `read ${headerBytes.byteLength} of the ${headerLength} header bytes: the file is shorter than its reported size of ${size} bytes`,
    );
  }

  const dataLength = size - 8n - declared;
  const { metadata, tensors } = parseHeader(headerBytes, dataLength, limits);
  return new SafetensorsFile(source, headerLength, metadata, tensors);
}
