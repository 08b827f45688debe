// Prometheus text exposition (format 0.0.4) of the agent's state, rendered at
// each scrape from the numbers the agent keeps: no metrics library, nothing
// to register, no label value that is not ours (kinds and fixed words only).

export const APPLY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A cumulative histogram of seconds. */
export class Histogram {
  readonly counts = APPLY_BUCKETS.map(() => 0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    this.sum += seconds;
    this.count++;
    APPLY_BUCKETS.forEach((b, i) => {
      if (seconds <= b) this.counts[i]!++;
    });
  }
}

type Labels = Record<string, string>;

export class Exposition {
  private readonly lines: string[] = [];

  private static labels(l: Labels | undefined): string {
    if (!l || Object.keys(l).length === 0) return '';
    return `{${Object.entries(l).map(([k, v]) => `${k}="${v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`).join(',')}}`;
  }

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: [Labels | undefined, number][]): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) this.lines.push(`${name}${Exposition.labels(l)} ${Number.isFinite(v) ? v : v > 0 ? '+Inf' : 'NaN'}`);
    return this;
  }

  histogram(name: string, help: string, h: Histogram): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    APPLY_BUCKETS.forEach((b, i) => this.lines.push(`${name}_bucket{le="${b}"} ${h.counts[i]}`));
    this.lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
    return this;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}
