/**
 * Uploads a checkpoint directory once and prints `{ checkpointBytes, seconds }` as JSON. The
 * upload-path bench runs it as a child process, so the client has its own event loop and does
 * not slow the server it measures.
 *
 * Usage: npx tsx bench/upload-client.ts URL DIR
 */

import { uploadCheckpoint } from "./service-client.ts";

const [url, dir] = process.argv.slice(2);
if (url === undefined || dir === undefined) {
  throw new Error("usage: npx tsx bench/upload-client.ts URL DIR");
}
const upload = await uploadCheckpoint(url, dir, {});
console.log(JSON.stringify({ checkpointBytes: upload.checkpointBytes, seconds: upload.seconds }));
