// Types of scripts/cni-lib.mjs for the TypeScript tests.
export interface PluginList {
  name: string;
  cniVersion: string;
}
export function pluginConfig<P extends { capabilities?: Record<string, boolean> }>(
  list: PluginList,
  plugin: P,
  prevResult?: unknown,
  runtime?: Record<string, unknown>,
): P & { name: string; cniVersion: string; runtimeConfig?: Record<string, unknown>; prevResult?: unknown };
export interface Summary {
  median: number | undefined;
  p90: number | undefined;
  p99: number | undefined;
  min: number | undefined;
  max: number | undefined;
  n: number;
}
export function summary(xs: number[]): Summary;
