"""Store memory and disk writes per tracked object over a long session, and what an abandoned session
leaves behind.

    .venv/bin/python -m bench.redis_footprint [--objects 4] [--frames 1000] [--ttl 2] [--anchors 1]

Drives the real RedisStateStore (what the function does on every call) with states of the real size at
1024 input (memory features 64x64x64 bf16), so no model is needed, against a real redis-server behind
the Kvrocks 2.7 stand-in (tests/support/kvrocks.py); reads `used_memory` from INFO memory. Prints the
peak and final memory per object against the state size, and the bytes written per object and frame
as Kvrocks pays for them (a SET writes its value, an EXPIRE rewrites it). The TTL is scaled down from
CVAT's 8 hours so that the run spans several TTLs and includes the refreshes; `ttls_covered` says how many.
With `--anchors N` every object holds N anchors (its start and N-1 corrections), as the state of an
object corrected N-1 times does (at most SAM2_MAX_ANCHORS, 4 by default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from config import StoreConfig
from state_store import RedisStateStore, Update
from tests.support.kvrocks import KvrocksStandIn
from tests.support.redis_server import RedisServer
from tests.support.synthetic import random_correction, random_object_state, random_step


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def measure(objects: int, frames: int, ttl: int, anchors: int = 1) -> dict:
    server = RedisServer(Path(tempfile.mkdtemp(prefix="sam2-redis-"))).start()
    kvrocks = KvrocksStandIn(server.port).start()
    try:
        client = server.client()
        cfg = StoreConfig(redis_host="127.0.0.1", redis_port=kvrocks.port, ttl_seconds=ttl)
        store = RedisStateStore.from_config(cfg)
        baseline = used_memory(client)
        states = [random_object_state(seed) for seed in range(objects)]
        stored = store.save([Update(state, "mask") for state in states])
        for correction in range(1, anchors):
            states = [random_correction(s.state, correction, max_anchors=anchors) for s in stored]
            stored = store.save(
                [Update(s, "mask", old, anchored=True) for s, old in zip(states, stored, strict=True)]
            )
        state_bytes = states[0].nbytes  # tensor data once the recent memory is full
        peak = 0
        began = time.monotonic()
        kvrocks.written.clear()
        for frame in range(1, frames + 1):
            loaded = store.load([s.token for s in stored])
            states = [random_step(s.state, frame * 1000 + i) for i, s in enumerate(loaded)]
            stored = store.save([Update(s, "mask", old) for s, old in zip(states, loaded, strict=True)])
            if frame % 50 == 0 or frame == frames:
                peak = max(peak, used_memory(client) - baseline)
        elapsed = time.monotonic() - began
        written = dict(kvrocks.written)
        final = used_memory(client) - baseline
        keys = len(client.keys("sam2-tracker:*"))

        # an abandoned session: started and stepped once, then left alone
        client.flushall()
        (abandoned,) = store.save([Update(random_object_state(99), "mask")])
        store.save([Update(random_step(abandoned.state, 1), "mask", abandoned)])
        left_before = len(client.keys("sam2-tracker:*"))
        time.sleep(2 * ttl + 1.5)
        left_after = len(client.keys("sam2-tracker:*"))
        per_frame = frames * objects
        return {
            "objects": objects,
            "anchors": anchors,
            "frames": frames,
            "ttl_s": ttl,
            "ttls_covered": round(elapsed / ttl, 1),
            "state_bytes_per_object": state_bytes,
            "peak_redis_bytes_per_object": peak // objects,
            "final_redis_bytes_per_object": final // objects,
            "peak_ratio_to_state": round(peak / objects / state_bytes, 3),
            "final_ratio_to_state": round(final / objects / state_bytes, 3),
            "keys_per_object": keys / objects,
            "bytes_written_per_object_per_frame": sum(written.values()) // per_frame,
            "set_bytes_per_object_per_frame": written.get("set", 0) // per_frame,
            "expire_rewrite_bytes_per_object_per_frame": written.get("expire", 0) // per_frame,
            "abandoned_keys_before_ttl": left_before,
            "abandoned_keys_after_twice_the_ttl": left_after,
        }
    finally:
        kvrocks.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=4)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--ttl", type=int, default=2, help="SAM2_TRACKER_STATE_TTL of the run, seconds")
    parser.add_argument(
        "--anchors", type=int, default=1, help="anchors per object (its start and corrections)"
    )
    args = parser.parse_args()
    report = measure(args.objects, args.frames, args.ttl, args.anchors)
    print(json.dumps(report, indent=2))
    ok = (
        report["peak_ratio_to_state"] <= 2.0
        and report["abandoned_keys_after_twice_the_ttl"] == 0
        and report["bytes_written_per_object_per_frame"] <= 600_000
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
