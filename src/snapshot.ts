// Entry of the start-up snapshot build (sea-config "useSnapshot"). Everything
// this file imports is evaluated once, at build time, and its heap is stored in
// the binary; at run time only the deserialize-main function runs. So nothing
// at module top level may read the environment, argv, stdin, pid or clock.
import { startupSnapshot } from 'node:v8';
import { execa } from 'execa';
import { main } from './main.js';
import './plugin/ipam.js';
import './plugin/cni.js';
import './plugin/policy.js';
import 'pino';

// Warm execa's lazily loaded internals (and Node's child_process ones) at build time.
void execa('/bin/true').finally(() => startupSnapshot.setDeserializeMainFunction(() => main()));
