"""Download the official SAM2 checkpoint that SAM2_CONFIG needs to SAM2_CHECKPOINT, when it is absent.

python -m fetch_checkpoint     (SAM2_CONFIG and SAM2_CHECKPOINT as the function reads them)
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from pathlib import Path

from config import ConfigError, TrackerConfig, checkpoint_url


def fetch(cfg: TrackerConfig) -> Path:
    target = cfg.checkpoint
    if target.is_file():
        return target
    url = checkpoint_url(cfg.sam2_config)
    if url is None:
        raise ConfigError(
            f"no official checkpoint is known for SAM2_CONFIG={cfg.sam2_config}: "
            f"put one at {target} or set SAM2_CHECKPOINT"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    print(f"downloading {url} -> {target}", file=sys.stderr, flush=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length", 0))
            done = 0
            while block := response.read(1 << 20):
                out.write(block)
                done += len(block)
                if total:
                    print(
                        f"\r{done * 100 // total:3d}% of {total // 1_000_000} MB",
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise ConfigError(
            f"could not download {url} ({error}). Offline? Copy the file to {target} from a machine "
            "with internet access, or set SAM2_CHECKPOINT to where it is"
        ) from None
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Settings: SAM2_CONFIG (default configs/sam2.1/sam2.1_hiera_t.yaml) and SAM2_CHECKPOINT "
        "(default checkpoints/<official name>.pt), as in the README's configuration table.",
    ).parse_args(argv)
    try:
        path = fetch(TrackerConfig.from_env())
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"checkpoint: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
