/**
 * A validator for the JSON Schema keywords openapi.yaml uses (type, enum, required, properties,
 * additionalProperties: false, items, $ref, numeric and length bounds, pattern). Unknown keywords
 * are ignored, so a schema using a new keyword checks less, never more.
 */

export type Schema = Record<string, unknown>;

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function matchesType(value: unknown, type: string): boolean {
  const actual = typeOf(value);
  return actual === type || (type === "number" && actual === "integer");
}

export class SchemaValidator {
  readonly #document: Schema;

  constructor(document: Schema) {
    this.#document = document;
  }

  /** Resolves a local `$ref` such as `#/components/schemas/Job`. */
  resolve(reference: string): Schema {
    let node: unknown = this.#document;
    for (const segment of reference.replace(/^#\//, "").split("/")) {
      node = (node as Record<string, unknown>)[segment];
      if (node === undefined) throw new Error(`unresolved $ref ${reference}`);
    }
    return node as Schema;
  }

  /** Returns one message per violation, each with the JSON path of the value. */
  validate(value: unknown, schema: Schema, path = "$"): string[] {
    if (typeof schema.$ref === "string")
      return this.validate(value, this.resolve(schema.$ref), path);
    const errors: string[] = [];
    const types =
      schema.type === undefined ? [] : ([] as string[]).concat(schema.type as string | string[]);
    if (types.length > 0 && !types.some((type) => matchesType(value, type))) {
      return [`${path}: expected ${types.join(" or ")}, got ${typeOf(value)}`];
    }
    if (Array.isArray(schema.enum) && !schema.enum.includes(value)) {
      errors.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
    }
    if (typeof value === "number") errors.push(...this.#checkNumber(value, schema, path));
    if (
      typeof value === "string" &&
      typeof schema.pattern === "string" &&
      !new RegExp(schema.pattern).test(value)
    ) {
      errors.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
    }
    if (Array.isArray(value)) {
      if (typeof schema.maxItems === "number" && value.length > schema.maxItems) {
        errors.push(`${path}: more than ${schema.maxItems} items`);
      }
      const items = schema.items as Schema | undefined;
      if (items) {
        value.forEach((item, i) => {
          errors.push(...this.validate(item, items, `${path}[${i}]`));
        });
      }
    }
    if (typeOf(value) === "object")
      errors.push(...this.#checkObject(value as Record<string, unknown>, schema, path));
    return errors;
  }

  #checkNumber(value: number, schema: Schema, path: string): string[] {
    const errors: string[] = [];
    if (typeof schema.minimum === "number" && value < schema.minimum)
      errors.push(`${path}: ${value} < ${schema.minimum}`);
    if (typeof schema.maximum === "number" && value > schema.maximum)
      errors.push(`${path}: ${value} > ${schema.maximum}`);
    if (typeof schema.exclusiveMinimum === "number" && value <= schema.exclusiveMinimum) {
      errors.push(`${path}: ${value} <= ${schema.exclusiveMinimum}`);
    }
    return errors;
  }

  #checkObject(value: Record<string, unknown>, schema: Schema, path: string): string[] {
    const errors: string[] = [];
    const properties = (schema.properties ?? {}) as Record<string, Schema>;
    for (const name of (schema.required ?? []) as string[]) {
      if (!(name in value)) errors.push(`${path}: missing required property ${name}`);
    }
    for (const [name, item] of Object.entries(value)) {
      if (properties[name])
        errors.push(...this.validate(item, properties[name], `${path}.${name}`));
      else if (schema.additionalProperties === false)
        errors.push(`${path}: unexpected property ${name}`);
    }
    return errors;
  }
}
