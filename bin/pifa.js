#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so the repository needs no
// separate build step after `npm ci`.
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
