/** Safetensors dtypes and their element sizes in bytes. */
export const DTYPE_SIZES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type Dtype = keyof typeof DTYPE_SIZES;

/** Dtypes that `readTensorFloat32` converts and that compression may target. */
export type FloatDtype = "F32" | "F16" | "BF16";

export const FLOAT_DTYPES: readonly FloatDtype[] = ["F32", "F16", "BF16"];

export function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" && Object.hasOwn(DTYPE_SIZES, value);
}

export function isFloatDtype(dtype: string): dtype is FloatDtype {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

export function dtypeSize(dtype: Dtype): number {
  return DTYPE_SIZES[dtype];
}
