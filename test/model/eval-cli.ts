// Runs `pifa eval` alone, so its tests do not depend on how main.ts wires
// the other commands: `node --import tsx test/model/eval-cli.ts eval ...`.
import { Command } from "commander";
import { registerEvalCommand } from "../../src/cli/eval.ts";

const program = new Command("pifa").showHelpAfterError();
registerEvalCommand(program);
await program.parseAsync(process.argv);
