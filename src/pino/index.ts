// Lazy bundle `pino` (src/lazy.ts): the log library, out of the start-up
// snapshot. src/log.ts creates its logger on the first record at an enabled
// level, so a process that logs nothing (VERSION, a quiet ADD at the default
// level warn) never evaluates it.
export { pino } from 'pino';
