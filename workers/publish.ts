/** Publishing the files the pipeline wrote to storage as a job's artifacts. */

import { createReadStream } from "node:fs";
import { join } from "node:path";
import { type ArtifactInfo, artifactKey } from "../src/jobs/model.ts";
import type { Storage } from "../src/storage/types.ts";

function contentTypeOf(name: string): string {
  return name.endsWith(".json") ? "application/json" : "application/octet-stream";
}

/**
 * Publishes each file of `directory` named in `files` under `jobs/<id>/artifacts/<name>`. Each
 * publish is atomic and records the SHA-256, which the API serves as the artifact's ETag.
 */
export async function publishArtifacts(
  storage: Storage,
  jobId: string,
  directory: string,
  files: readonly string[],
): Promise<ArtifactInfo[]> {
  const artifacts: ArtifactInfo[] = [];
  for (const name of files) {
    const stream = createReadStream(join(directory, name));
    try {
      const published = await storage.publish(artifactKey(jobId, name), stream, {
        contentType: contentTypeOf(name),
      });
      artifacts.push({ name, size: published.size, sha256: published.sha256 });
    } finally {
      stream.destroy();
    }
  }
  return artifacts;
}
