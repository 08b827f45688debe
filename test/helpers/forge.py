#!/usr/bin/env python3
# Forged frames, as an attacker inside a pod with CAP_NET_RAW would send them
# (containerd and Docker grant it by default), and a sniffer for the victim's
# side. Standard library only (AF_PACKET), so the tests need no packet tool.
# Run inside the pod's network namespace (ip netns exec):
#   forge.py send IFNAME KIND JSON    KIND: udp4 tcpsyn4 arp udp6 ra na
#   forge.py sniff IFNAME MARKER SECONDS
#       prints "ready", then one JSON line per frame holding MARKER, and
#       "done" when SECONDS have passed (or on SIGTERM).
import json
import signal
import socket
import struct
import sys
import time


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(':'))


def csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def ether(dst, src, ethertype, payload):
    return mac_bytes(dst) + mac_bytes(src) + struct.pack('!H', ethertype) + payload


def ipv4(src, dst, proto, payload):
    hdr = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 0x1234, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack('!H', csum(hdr)) + hdr[12:]
    return hdr + payload


def l4_v4(src, dst, proto, seg):
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, proto, len(seg))
    return csum(pseudo + seg)


def l4_v6(src, dst, proto, seg):
    pseudo = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + struct.pack('!IxxxB', len(seg), proto)
    return csum(pseudo + seg)


def udp(src, dst, sport, dport, data, v6=False):
    seg = struct.pack('!HHHH', sport, dport, 8 + len(data), 0) + data
    c = (l4_v6 if v6 else l4_v4)(src, dst, 17, seg) or 0xffff
    return seg[:6] + struct.pack('!H', c) + seg[8:]


def tcp_syn(src, dst, sport, dport, data):
    seg = struct.pack('!HHIIBBHHH', sport, dport, 0x01020304, 0, 5 << 4, 0x02, 64240, 0, 0) + data
    c = l4_v4(src, dst, 6, seg)
    return seg[:16] + struct.pack('!H', c) + seg[18:]


def ipv6(src, dst, nh, payload, hop=64):
    return struct.pack('!IHBB', 6 << 28, len(payload), nh, hop) + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload


def icmp6(src, dst, typ, code, body):
    msg = struct.pack('!BBH', typ, code, 0) + body
    c = l4_v6(src, dst, 58, msg)
    return msg[:2] + struct.pack('!H', c) + msg[4:]


def frame(kind, a):
    m = a.get('marker', 'nhi-forged').encode()
    if kind == 'udp4':
        return ether(a['dstMac'], a['srcMac'], 0x0800, ipv4(a['src'], a['dst'], 17, udp(a['src'], a['dst'], 40000, a['port'], m)))
    if kind == 'tcpsyn4':
        return ether(a['dstMac'], a['srcMac'], 0x0800, ipv4(a['src'], a['dst'], 6, tcp_syn(a['src'], a['dst'], 40001, a['port'], m)))
    if kind == 'arp':
        # A reply: "senderIp is at senderMac", to targetIp.
        body = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2) + mac_bytes(a['senderMac']) + socket.inet_aton(a['senderIp']) + mac_bytes(a['dstMac']) + socket.inet_aton(a['targetIp'])
        return ether(a['dstMac'], a['srcMac'], 0x0806, body)
    if kind == 'udp6':
        return ether(a['dstMac'], a['srcMac'], 0x86dd, ipv6(a['src'], a['dst'], 17, udp(a['src'], a['dst'], 40002, a['port'], m, v6=True)))
    if kind == 'ra':
        # Router advertisement to all nodes: default router for 1800 s, and a
        # prefix for autoconfiguration (on-link + autonomous).
        prefix = socket.inet_pton(socket.AF_INET6, a['prefix'])
        opt_prefix = struct.pack('!BBBBIII', 3, 4, 64, 0xc0, 86400, 14400, 0) + prefix
        opt_sll = struct.pack('!BB', 1, 1) + mac_bytes(a['srcMac'])
        body = struct.pack('!BBHII', 64, 0, 1800, 0, 0) + opt_prefix + opt_sll
        return ether('33:33:00:00:00:01', a['srcMac'], 0x86dd, ipv6(a['src'], 'ff02::1', 58, icmp6(a['src'], 'ff02::1', 134, 0, body), hop=255))
    if kind == 'na':
        # Unsolicited, overriding advertisement: "target is at srcMac".
        target = socket.inet_pton(socket.AF_INET6, a['target'])
        body = struct.pack('!I', 0x20000000) + target + struct.pack('!BB', 2, 1) + mac_bytes(a['srcMac'])
        return ether('33:33:00:00:00:01', a['srcMac'], 0x86dd, ipv6(a['src'], 'ff02::1', 58, icmp6(a['src'], 'ff02::1', 136, 0, body), hop=255))
    raise SystemExit('unknown kind ' + kind)


def send(ifname, kind, args):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    f = frame(kind, json.loads(args))
    for _ in range(int(json.loads(args).get('count', 3))):
        s.send(f)
        time.sleep(0.05)


def sniff(ifname, marker, seconds):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    s.settimeout(0.2)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    print('ready', flush=True)
    end = time.time() + float(seconds)
    m = marker.encode()
    while not stop[0] and time.time() < end:
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if m in data and addr[2] != socket.PACKET_OUTGOING:
            print(json.dumps({'src': data[6:12].hex(':'), 'len': len(data)}), flush=True)
    print('done', flush=True)


if __name__ == '__main__':
    cmd = sys.argv[1]
    if cmd == 'send':
        send(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == 'sniff':
        sniff(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit('usage: forge.py send|sniff ...')
