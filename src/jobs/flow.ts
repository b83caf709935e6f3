/**
 * Names and settings of the BullMQ flow that spreads one data-free job over several workers, and
 * of the queue that limits how many data-aware jobs run at once. Every queue shares the service's
 * key prefix, so with its `{...}` hash tag all keys land in one Redis Cluster slot.
 */

/** Queue of the layer-group child jobs of a data-free job; keys are `<prefix>:compress-layers:*`. */
export const LAYER_GROUP_QUEUE_NAME = "compress-layers";

/** Queue of data-aware jobs, capped by a global concurrency; keys are `<prefix>:compress-data-aware:*`. */
export const DATA_AWARE_QUEUE_NAME = "compress-data-aware";

/** Name of every layer-group child job. */
export const LAYER_GROUP_JOB_NAME = "compress-layer-group";

/** Name of every job of the data-aware queue. */
export const DATA_AWARE_JOB_NAME = "compress-data-aware";

/** Compressed weight matrices per child job by default: the 7 linear layers of one LLaMA decoder layer. */
export const DEFAULT_LAYERS_PER_CHILD = 7;

/** Data-aware jobs running at once across all workers by default. */
export const DEFAULT_MAX_DATA_AWARE_JOBS = 1;

/** Data of a layer-group child job: the parent's job id and a range of `plan.layers` indices. */
export interface LayerGroupData {
  jobId: string;
  /** Index of the group, from 0. */
  group: number;
  /** First index into the plan's compressed layers. */
  first: number;
  /** Index one past the last layer of the group. */
  end: number;
}

/** Data of the parent job once it has fanned out; absent on its first run. */
export interface ParentJobData {
  step?: "assemble";
}

/** BullMQ job id of a layer-group child. BullMQ rejects custom ids that contain `:`. */
export function layerGroupJobId(jobId: string, group: number): string {
  return `${jobId}-layers-${group}`;
}

/** Splits `layerCount` layers into consecutive groups of at most `layersPerChild`. */
export function layerGroups(
  jobId: string,
  layerCount: number,
  layersPerChild: number,
): LayerGroupData[] {
  const groups: LayerGroupData[] = [];
  for (let first = 0; first < layerCount; first += layersPerChild) {
    groups.push({
      jobId,
      group: groups.length,
      first,
      end: Math.min(layerCount, first + layersPerChild),
    });
  }
  return groups;
}

/**
 * Redis set of the names of a fanned-out job's finished layers. A set, not a counter, so a layer
 * that a retried child loads again is not counted twice.
 */
export function finishedLayersKey(prefix: string, jobId: string): string {
  return `${prefix}:flow:${jobId}:finished-layers`;
}

export interface FlowSettings {
  /** Compressed weight matrices per child job (`PIFA_LAYERS_PER_CHILD`); 0 turns fan-out off. */
  layersPerChild: number;
  /** Data-aware jobs running at once across all workers (`PIFA_MAX_DATA_AWARE_JOBS`). */
  maxDataAwareJobs: number;
}

function readInteger(
  env: NodeJS.ProcessEnv,
  name: string,
  minimum: number,
  fallback: number,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < minimum) {
    throw new Error(
      `${name} is invalid: ${JSON.stringify(raw)} is not an integer >= ${minimum}. Set it to such an integer or unset it to use ${fallback}.`,
    );
  }
  return value;
}

/** Reads the flow settings from the environment; throws naming the variable when one is invalid. */
export function loadFlowSettings(env: NodeJS.ProcessEnv = process.env): FlowSettings {
  return {
    layersPerChild: readInteger(env, "PIFA_LAYERS_PER_CHILD", 0, DEFAULT_LAYERS_PER_CHILD),
    maxDataAwareJobs: readInteger(env, "PIFA_MAX_DATA_AWARE_JOBS", 1, DEFAULT_MAX_DATA_AWARE_JOBS),
  };
}
