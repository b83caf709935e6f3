import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";

/** S3 server for one test file, listening on 127.0.0.1. */
export interface TestS3 {
  /** `http://127.0.0.1:<port>` */
  endpoint: string;
  /** A bucket that already exists. */
  bucket: string;
  /** AWS variables that point an S3 client at this server with its accepted credentials. */
  env: NodeJS.ProcessEnv;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

// s3rver's single built-in account. It rejects other access key ids but does not verify SigV4
// signatures, so a wrong secret key goes unnoticed.
const ACCESS_KEY_ID = "S3RVER";
const SECRET_ACCESS_KEY = "S3RVER";

/**
 * Starts s3rver 3.7 on a free port of 127.0.0.1 with an empty bucket, storing objects in a new
 * temporary directory.
 *
 * NOTE: s3rver 3.7 fails three kinds of request, so tests must avoid them or expect the failure.
 * A truncated ListObjectsV2 page returns HTTP 500 on Node.js 17 and later, because its
 * continuation tokens use the DES cipher, which OpenSSL 3 disables. UploadPartCopy returns
 * NotImplemented. AbortMultipartUpload returns MethodNotAllowed, so the parts of a failed upload
 * stay in the server's directory.
 */
export async function startS3(bucket = "pifa-test"): Promise<TestS3> {
  const directory = await mkdtemp(join(tmpdir(), "pifa-s3-"));
  const server = new S3rver({
    address: "127.0.0.1",
    port: 0,
    silent: true,
    directory,
    vhostBuckets: false,
    configureBuckets: [{ name: bucket }],
  });
  let address: Awaited<ReturnType<S3rver["run"]>>;
  try {
    address = await server.run();
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${address.port}`;
  return {
    endpoint,
    bucket,
    env: {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_ACCESS_KEY_ID: ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY,
      AWS_REGION: "us-east-1",
    },
    async stop() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
