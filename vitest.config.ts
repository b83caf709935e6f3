import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Native LAPACK calls use every core; running test files one at a time
    // keeps timings and thread counts predictable on small CI machines.
    fileParallelism: false,
    pool: "forks",
  },
});
