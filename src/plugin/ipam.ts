// Plugin type `nhi-ipam`: host-local-compatible IPAM, run by a main plugin (the
// reference bridge, or any other) as its `ipam.type`.
import { parseCniArgs, podOfArgs } from '../cni/args.js';
import { parsePrevResult } from '../cni/result.js';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus } from '../chain/ipam/index.js';
import { loadIpamConfig } from '../chain/ipam/config.js';
import { formatIp } from '../net/ip.js';
import { validAttachments } from '../cni/attachments.js';
import { log } from '../log.js';
import type { CniRequest } from '../cni/request.js';
import type { PluginType } from './request.js';

function load(req: CniRequest) {
  const args = parseCniArgs(req.env.args, ['IP']);
  return loadIpamConfig(req.config, req.config.name, req.version, args.IP);
}

const attachment = (req: CniRequest) => ({ containerId: req.env.containerId, ifname: req.env.ifname });

/** The fields of a log line of this attachment (docs/operations.md "Logs"). */
function subject(req: CniRequest): Record<string, unknown> {
  const pod = podOfArgs(req.env.args);
  return { network: req.config.name, containerId: req.env.containerId, ifname: req.env.ifname, netns: req.env.netns, ...(pod ? { pod } : {}), durationMs: Math.round(performance.now()) };
}

export const ipamPlugin: PluginType = {
  async add(req) {
    // A repeated ADD is refused, as host-local refuses it (see ipamAdd).
    const result = ipamAdd(load(req), attachment(req), false);
    log.info({ verb: 'ADD', ...subject(req), ips: result.ips?.map((i) => i.address) }, 'addresses reserved');
    return result;
  },
  async del(req) {
    const released = ipamDel(load(req), attachment(req));
    log.info({ verb: 'DEL', ...subject(req), ips: released.map(formatIp) }, 'addresses released');
  },
  async check(req) {
    const prev = req.config.prevResult === undefined ? undefined : parsePrevResult(req.config.prevResult, req.version);
    ipamCheck(load(req), attachment(req), prev);
  },
  async gc(req) {
    const released = ipamGc(load(req), validAttachments(req.config));
    if (released.length) log.info({ verb: 'GC', network: req.config.name, ips: released.map(formatIp) }, 'stale reservations released');
  },
  async status(req) {
    ipamStatus(load(req));
  },
};
