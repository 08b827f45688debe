#!/usr/bin/env python3
# Counts frames on an interface that carry a marker string, for a given time
# (stdlib only: an AF_PACKET socket). Prints "ready" once listening, then one
# JSON line: {"frames": N, "hits": M}. Used to show WireGuard hides payloads
# that VXLAN carries in clear on the underlay.
import json, socket, sys, time
iface, marker, seconds = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
if iface != "any":  # "any": every interface of the namespace (each bridge port sees the frame)
    s.bind((iface, 0))
s.settimeout(0.1)
print("ready", flush=True)
frames = hits = 0
end = time.time() + seconds
while time.time() < end:
    try:
        data = s.recv(65535)
    except socket.timeout:
        continue
    frames += 1
    if marker in data:
        hits += 1
print(json.dumps({"frames": frames, "hits": hits}), flush=True)
