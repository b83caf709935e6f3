import { type AddressInfo, createServer } from "node:net";

/**
 * Returns a TCP port that was free on `host` a moment ago, found by letting the OS assign one to
 * a throwaway listener. Another process can take it before the caller binds it, so callers must
 * retry on "address in use".
 */
export function findFreePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
