import { S3Client } from "@aws-sdk/client-s3";

/** Connection settings for an S3-compatible endpoint; unset fields come from the AWS environment variables. */
export interface S3ConnectionOptions {
  /** Environment to read the AWS variables from; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Endpoint URL such as `http://127.0.0.1:9000`; defaults to `AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`, then AWS itself. */
  endpoint?: string;
  /** Defaults to `AWS_REGION`, then `AWS_DEFAULT_REGION`, then `us-east-1`. */
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and most self-hosted stores need; defaults to true when an endpoint is set. */
  forcePathStyle?: boolean;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}

/**
 * Creates an S3 client from the options and the usual AWS variables. When `AWS_ACCESS_KEY_ID`
 * and `AWS_SECRET_ACCESS_KEY` are both set in `env`, they and `AWS_SESSION_TOKEN` are the
 * credentials. Otherwise the SDK's default chain applies: process environment, shared config
 * files, then instance or container roles.
 */
export function createS3Client(options: S3ConnectionOptions = {}): S3Client {
  const env = options.env ?? process.env;
  const endpoint =
    options.endpoint ?? nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  const region =
    options.region ?? nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? "us-east-1";
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  const sessionToken = nonEmpty(env.AWS_SESSION_TOKEN);
  return new S3Client({
    region,
    ...(endpoint === undefined ? {} : { endpoint }),
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    ...(accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId, secretAccessKey, sessionToken } }
      : {}),
  });
}
