// Lazy bundle `yaml` (src/lazy.ts): the YAML library, out of the start-up
// snapshot. A CNI verb needs it only to parse policy manifests (when they
// changed since the last compile) or a kubeconfig; the command line for
// `-o yaml`. Every other plugin process (VERSION, most ADDs, DEL, CHECK)
// no longer deserializes it.
export { parse, parseAllDocuments, stringify } from 'yaml';
