"""Would sharing encoded frames between replicas through Redis pay? Encoder time against the round trip.

    .venv/bin/python -m bench.feature_sharing [--image-size 1024] [--frames 5]

For one frame: the image encoder's time on this machine (the default precision), against what a replica
would pay to share its output instead: serialize the features (safetensors, as the states are), SET them
in a real redis-server on loopback, GET and parse them on the next replica. Loopback is the best case; a
network adds size / bandwidth (e.g. 1 Gbit/s: 8 ms per MB). Prints medians and the bytes per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.torch import load, save

from tests.support.models import make_tracker
from tests.support.redis_server import RedisServer
from tests.support.synthetic import write_checkpoint


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sam2-sharing-"))
    tracker = make_tracker(
        write_checkpoint(work / "random.pt"),
        precision="auto",
        overrides=(f"++model.image_size={args.image_size}",),
        fast_attention="auto",
    )
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(args.frames + 1)]
    tracker.encode(pictures[-1])  # warm-up
    server = RedisServer(work).start()
    client = server.client()
    encode, write, read = [], [], []
    try:
        for picture in pictures[:-1]:
            began = time.perf_counter()
            features = tracker._run_encoder(picture)
            encode.append(time.perf_counter() - began)
            tensors = {f"feat{i}": t.contiguous() for i, t in enumerate(features.vision_feats)}
            began = time.perf_counter()
            data = save(tensors)
            client.set("features", data)
            write.append(time.perf_counter() - began)
            began = time.perf_counter()
            load(client.get("features"))
            read.append(time.perf_counter() - began)
    finally:
        server.stop()
    report = {
        "image_size": args.image_size,
        "precision": tracker.precision,
        "bytes_per_frame": len(data),
        "encode_ms": median_ms(encode),
        "serialize_and_set_ms": median_ms(write),
        "get_and_parse_ms": median_ms(read),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
