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
