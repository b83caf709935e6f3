/**
 * Catalogue of model errors: failures to build or run the forward pass of a
 * checkpoint. Every code has status 422 because the uploaded checkpoint or
 * its config.json cannot run; token data errors live in `src/data/errors.ts`.
 */
export const MODEL_ERRORS = {
  UNSUPPORTED_ARCHITECTURE: {
    status: 422,
    summary: "config.json names an architecture the forward pass does not implement",
  },
  UNSUPPORTED_MODEL_CONFIG: {
    status: 422,
    summary:
      "config.json sets a feature the forward pass does not implement (rope scaling type, activation)",
  },
  INVALID_MODEL_CONFIG: {
    status: 422,
    summary: "config.json lacks a field the forward pass needs, or its fields disagree",
  },
  MISSING_WEIGHT: {
    status: 422,
    summary: "a tensor the architecture needs is absent from the checkpoint",
  },
  INVALID_WEIGHT: {
    status: 422,
    summary: "a tensor has a shape or dtype that does not fit the config",
  },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ModelErrorCode = keyof typeof MODEL_ERRORS;

/** Error raised by the model layer, with a stable `code`, an HTTP `status` and the field. */
export class ModelError extends Error {
  override readonly name = "ModelError";
  readonly code: ModelErrorCode;
  readonly status: number;
  /** Config key or tensor name the error is about, when there is one. */
  readonly field: string | undefined;

  constructor(code: ModelErrorCode, message: string, field?: string) {
    super(message);
    this.code = code;
    this.status = MODEL_ERRORS[code].status;
    this.field = field;
  }
}
