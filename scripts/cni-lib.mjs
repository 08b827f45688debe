// What the benchmarks and the tests share about running CNI plugins and
// reading their timings (plain JavaScript, so the .mjs scripts and the
// TypeScript tests import the same code):
//   pluginConfig  the config one plugin of a conflist receives, as libcni
//                 builds it (buildOneConfig + injectRuntimeConfig)
//   summary       median and nearest-rank percentiles of a sample

/**
 * libcni's config for plugin `plugin` of `list`: the list's name and
 * cniVersion injected, `runtimeConfig` holding the runtime's values of the
 * capabilities the plugin declares (when `runtime` is given), and the
 * previous plugin's result as `prevResult`.
 */
export function pluginConfig(list, plugin, prevResult, runtime) {
  const conf = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (runtime !== undefined) {
    const rc = {};
    for (const [cap, on] of Object.entries(plugin.capabilities ?? {})) if (on && runtime[cap] !== undefined) rc[cap] = runtime[cap];
    if (Object.keys(rc).length) conf.runtimeConfig = rc;
  }
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

/** The nearest-rank percentile q (0..1) of sorted values: with fewer than 1/(1-q) samples, the maximum. */
function rank(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** Median, p90, p99 (nearest rank), min, max and n, rounded to µs; undefined fields for an empty sample. */
export function summary(xs) {
  if (!xs.length) return { median: undefined, p90: undefined, p99: undefined, min: undefined, max: undefined, n: 0 };
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { median: r3(median), p90: r3(rank(s, 0.9)), p99: r3(rank(s, 0.99)), min: r3(s[0]), max: r3(s[n - 1]), n };
}
