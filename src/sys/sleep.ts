// A blocking sleep for the few places that wait synchronously (a busy lock, a
// full pipe). Created on first use: a start-up snapshot build has no
// SharedArrayBuffer at module evaluation time.
let cell: Int32Array | undefined;

export function sleepMs(ms: number): void {
  cell ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(cell, 0, 0, ms);
}
