"""Glass-to-glass latency and CPU of RTMP streams, direct and through byoc-gateway (bench/media.sh).

For each of STREAMS concurrent streams, `ffmpeg -re` pushes SECONDS of test pattern (H.264,
2 s keyframes, AAC) by RTMP and an RTMP listener (`ffmpeg -listen 1 ... -vf showinfo -f null`)
receives the video; this script reads the listener's showinfo lines as they are printed and
notes when frame n arrived. Frame n leaves the publisher's input n/FPS after the publisher was
launched (`-re`), so its glass-to-glass delay is arrival(n) - launch - n/FPS, including both
ffmpegs' start-up; the same tools run directly (publisher -> listener) and through the gateway
(publisher -> gateway RTMP ingest -> MPEG-TS segments -> trickle -> the simulator's pass-through
runner -> trickle -> the gateway's RTMP output -> listener), so the difference of the two is
what the gateway (with a pass-through orchestrator on loopback) adds.

CPU: the gateway's own CPU seconds plus its reaped children's (the ingest and output ffmpeg
remuxes), over the gateway run, per stream and per second of video; beside it the publisher's
encoder CPU per stream (the cost a client already pays), measured in the same run.

Usage: python3 bench/media.py MODE GW_HTTP GW_PID RTMP_PORT STREAMS SECONDS TAG
  MODE direct|gateway; prints one JSON line.
"""

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import base64

FPS = 30
FRAME = re.compile(rb"\bn:\s*(\d+)\b")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listening(port):
    """Whether a socket listens on 127.0.0.1:port (/proc/net/tcp: state 0A), without
    connecting (an `ffmpeg -listen 1` takes exactly one connection)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        return any(l.split()[1] == want and l.split()[3] == "0A" for l in f.readlines()[1:])


def ticks(pid):
    """User + system CPU ticks of pid and of its reaped children."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def children(pid):
    """Live child processes of pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(pid):
                out.append(int(d))
    return out


class Receiver:
    """An RTMP listener noting when each video frame arrives."""

    def __init__(self, port):
        self.port = port
        self.arrivals = {}
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "info", "-listen", "1",
             "-i", f"rtmp://127.0.0.1:{port}/live/out", "-map", "0:v", "-vf", "showinfo", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not listening(port):
            if time.monotonic() > deadline:
                raise SystemExit(f"the receiver on {port} did not listen")
            time.sleep(0.02)

    def read(self):
        for line in self.proc.stderr:
            if b"Parsed_showinfo" in line:
                m = FRAME.search(line)
                if m:
                    self.arrivals.setdefault(int(m.group(1)), time.monotonic())


def publish(url, seconds):
    """`ffmpeg -re` pushing the test pattern to url, run under /usr/bin/time for its CPU."""
    return subprocess.Popen(
        ["/usr/bin/time", "-f", "%U %S", "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
         "-f", "lavfi", "-i", f"testsrc=size=640x360:rate={FPS}",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
         "-g", str(2 * FPS), "-keyint_min", str(2 * FPS), "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", "64k", "-f", "flv", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def start_stream(gw, sid, output):
    header = {"capability": "bench", "request": "{}", "timeout_seconds": 10,
              "parameters": json.dumps({"enable_video_ingress": True, "enable_video_egress": True})}
    return http("POST", f"{gw}/process/stream/start",
                json.dumps({"stream_id": sid, "rtmp_output": output}).encode(),
                {"Livepeer": base64.b64encode(json.dumps(header).encode()).decode(),
                 "Content-Type": "application/json"})


def main():
    mode, gw, gw_pid, rtmp_port, streams, seconds, tag = sys.argv[1:8]
    streams, seconds, gw_pid = int(streams), int(seconds), int(gw_pid)
    receivers = [Receiver(free_port()) for _ in range(streams)]
    targets = []
    for i, r in enumerate(receivers):
        out = f"rtmp://127.0.0.1:{r.port}/live/out"
        if mode == "direct":
            targets.append(out)
        else:
            urls = start_stream(gw, f"{tag}-{i}", out)
            targets.append(urls["rtmp_url"])
    c0 = ticks(gw_pid) if mode == "gateway" else 0
    t0 = time.monotonic()
    launches, pubs = [], []
    for url in targets:
        launches.append(time.monotonic())
        pubs.append(publish(url, seconds))
    enc = 0.0
    for p in pubs:
        _, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise SystemExit(f"publisher failed: {err.decode(errors='replace')[-500:]}")
        enc += sum(float(x) for x in err.decode().strip().splitlines()[-1].split())
    # The last frames: until every frame is in or none came for 3 s (at most 30 s).
    want = seconds * FPS
    deadline = time.monotonic() + 30
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline and any(len(r.arrivals) < want for r in receivers):
        now_seen = sum(len(r.arrivals) for r in receivers)
        if now_seen != seen:
            seen, quiet_since = now_seen, time.monotonic()
        elif time.monotonic() - quiet_since > 3:
            break
        time.sleep(0.1)
    stopped = time.monotonic()
    if mode == "gateway":
        for i in range(streams):
            http("POST", f"{gw}/process/stream/{tag}-{i}/stop", b"")
    for r in receivers:
        try:
            r.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        r.thread.join(timeout=5)
    if mode == "gateway":
        # The remux ffmpegs' CPU counts once the gateway has reaped them (bounded wait).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and children(gw_pid):
            time.sleep(0.05)
    elapsed = time.monotonic() - t0
    cpu = (ticks(gw_pid) - c0) / os.sysconf("SC_CLK_TCK") if mode == "gateway" else None
    # Frames that came out only once the stream was stopped (the output's last packets, held by
    # its ffmpeg until its input ends), counted apart from the delays.
    late = sorted(n for r in receivers for n, t in r.arrivals.items() if t >= stopped)
    delays = [t - launch - n / FPS for r, launch in zip(receivers, launches)
              for n, t in r.arrivals.items() if t < stopped]
    delays.sort()
    q = lambda p: round(1000 * delays[min(len(delays) - 1, int(p * len(delays)))]) if delays else None
    print(json.dumps({
        "mode": mode, "streams": streams, "seconds": seconds,
        "frames": sum(len(r.arrivals) for r in receivers), "frames_sent": streams * want,
        "frames_at_stop": len(late), "first_frame_at_stop": late[0] if late else None,
        "delay_p50_ms": q(0.50), "delay_p95_ms": q(0.95), "delay_max_ms": q(1.0),
        "gateway_cpu_pct_per_stream": round(100 * cpu / elapsed / streams, 1) if cpu is not None else None,
        "gateway_cpu_s_per_video_s": round(cpu / (streams * seconds), 3) if cpu is not None else None,
        "encoder_cpu_pct_per_stream": round(100 * enc / seconds / streams, 1),
    }))


if __name__ == "__main__":
    main()
