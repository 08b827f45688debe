// Node 26's node:ffi, loaded once. It is experimental and says so on stderr
// when loaded; the binary pins its Node version, so that one warning is
// silenced (a CNI plugin's stderr is read by people debugging a runtime).
type Ffi = typeof import('node:ffi');

let ffi: Ffi | undefined;

export function ffiModule(): Ffi {
  if (ffi) return ffi;
  const emit = process.emitWarning;
  process.emitWarning = () => {};
  try {
    ffi = process.getBuiltinModule('node:ffi') as Ffi;
  } finally {
    process.emitWarning = emit;
  }
  return ffi;
}

/**
 * A reader of the calling thread's errno, for right after a failed libc call
 * made through node:ffi. Made ahead (when a module loads its functions): made
 * on first use it would dlopen between the failed call and the read, and
 * dlopen may itself set errno.
 */
export function errnoReader(): () => number {
  const ffi = ffiModule();
  const { functions } = ffi.dlopen('libc.so.6', { __errno_location: { arguments: [], return: 'pointer' } }) as unknown as { functions: { __errno_location(): bigint } };
  return () => ffi.getInt32(functions.__errno_location(), 0) as number;
}
