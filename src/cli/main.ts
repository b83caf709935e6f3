/**
 * `pifa`: the command-line entry point. Offline commands (inspect, compress,
 * expand) work on local files; the service commands run the HTTP API and
 * workers.
 */

import { createRequire } from "node:module";
import { Command } from "commander";
import { registerEvalCommand } from "./eval.ts";
import { registerJobsCommand } from "./jobs.ts";
import { registerOfflineCommands } from "./offline.ts";
import { registerServiceCommands } from "./serve.ts";

const { version } = createRequire(import.meta.url)("../../package.json") as { version: string };

const program = new Command("pifa")
  .description("Compress LLM checkpoints with truncated SVD, SVD-LLM, M and PIFA")
  .version(version)
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

registerOfflineCommands(program);
registerEvalCommand(program);
registerJobsCommand(program);
registerServiceCommands(program);

await program.parseAsync(process.argv);
