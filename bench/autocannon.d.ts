/** The part of autocannon's JavaScript API that bench/load.ts uses (autocannon 9 ships no types). */
declare module "autocannon" {
  export interface Request {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** Returns the request to send, built from the previous one. Runs before every request. */
    setupRequest?: (request: Request, context: Record<string, unknown>) => Request;
    /** Called with each response's status and body. */
    onResponse?: (status: number, body: string, context: Record<string, unknown>) => void;
  }

  export interface Options {
    url: string;
    connections?: number;
    /** Seconds to run. */
    duration?: number;
    /** Requests per second over all connections, unlimited when absent. */
    overallRate?: number;
    /** Seconds before a request counts as timed out. */
    timeout?: number;
    requests?: Request[];
  }

  export interface Histogram {
    average: number;
    p50: number;
    p90: number;
    p99: number;
    max: number;
  }

  export interface Result {
    requests: Histogram & { total: number };
    latency: Histogram;
    errors: number;
    timeouts: number;
    non2xx: number;
    "2xx": number;
    "4xx": number;
    "5xx": number;
  }

  export default function autocannon(options: Options): Promise<Result>;
}
