// The command line for people: `nhi-cni <command>`. Every command has --help.
import { Command } from 'commander';
import { SUPPORTED_VERSIONS } from '../cni/version.js';
import { PLUGIN_TYPES } from '../plugin/skel.js';
import { agentCommand } from './agent.js';
import { installCommand } from './install.js';
import { uninstallCommand } from './uninstall.js';
import { ipamCommand } from './ipam.js';
import { policyCommand } from './policy.js';
import { statusCommand } from './status.js';
import { whoCommand } from './who.js';
import { observeCommand } from './observe.js';
import { EXIT, formatOf, outputOption, printDocument } from './output.js';

declare const NHI_CNI_VERSION: string;
export const VERSION = typeof NHI_CNI_VERSION === 'string' ? NHI_CNI_VERSION : '0.0.0-dev';

/**
 * A reader that went away (`nhi-cni policy sync | head -1`) ends the command
 * quietly, as SIGPIPE ends a C program: no stack trace, no "write EPIPE".
 */
let pipesWatched = false;
function quietOnClosedPipe(): void {
  if (pipesWatched) return;
  pipesWatched = true;
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
      throw e;
    });
  }
}

export async function runCli(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  const program = new Command('nhi-cni')
    .description('A CNI plugin for least-privilege workload networking.\nRun by a container runtime with CNI_COMMAND set; run by people without it.')
    .version(VERSION, '-V, --version')
    .showHelpAfterError()
    .exitOverride();
  program
    .command('version')
    .description('print the build and the CNI spec versions it speaks')
    .addOption(outputOption(['table', 'json', 'yaml']))
    .action(async (o: { output: string }) => {
      const format = formatOf(o);
      if (format === 'json' || format === 'yaml') return printDocument({ version: VERSION, pluginTypes: PLUGIN_TYPES, cniVersions: SUPPORTED_VERSIONS }, format);
      process.stdout.write(`nhi-cni ${VERSION}\nplugin types: ${PLUGIN_TYPES.join(', ')}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(', ')}\n`);
    });
  program.addCommand(ipamCommand());
  program.addCommand(whoCommand());
  program.addCommand(policyCommand());
  program.addCommand(installCommand());
  program.addCommand(uninstallCommand());
  program.addCommand(observeCommand());
  program.addCommand(agentCommand(VERSION));
  program.addCommand(statusCommand());
  // Commands made with `new Command` do not inherit exitOverride: without it a
  // subcommand's usage error would exit 1 from inside commander.
  const overrideAll = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(overrideAll);
  };
  overrideAll(program);
  try {
    await program.parseAsync(argv);
    // A command may set a non-zero status without throwing (e.g. `who` finding nobody).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    // Help and --version exit 0; any other complaint of the parser is bad usage: 2 (docs/cli.md).
    if (err.code?.startsWith('commander.')) return err.exitCode === 0 ? 0 : EXIT.usage;
    process.stderr.write(`nhi-cni: ${err.message ?? String(e)}\n`);
    return 1;
  }
}
