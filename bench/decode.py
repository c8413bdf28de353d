"""Remote write 1.0 decode in isolation: snappy + WriteRequest -> WriteBatch, as the receiver
does it (`RemoteWriteDecoder.decode_partial`), for the pure-Python path and the native one
(`rtpm.ingest._rwdecode`, when it was built). No server, no storage: the CPU of this process only.

The bodies are the ones `bench/ingest.py` sends (10,000 series of 4-5 labels, batches of 5,000
cut from a stream that gives every series one sample per 10 s). The first pass over the series is
the cold case (every label set new to the decoder); the rest is steady state (labels known).

    .venv/bin/python bench/decode.py --samples 2000000
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import encode_remote_write, make_series, sample_stream  # noqa: E402

from rtpm.ingest import remote_write  # noqa: E402
from rtpm.ingest.compression import decompress  # noqa: E402
from rtpm.ingest.remote_write import RemoteWriteDecoder  # noqa: E402
from rtpm.ingest.validate import Validator  # noqa: E402
from rtpm.settings import LimitsSettings  # noqa: E402


def run(bodies: list[bytes], native: bool, rounds: int) -> tuple[float, float, float, int]:
    """(cold s, steady wall s, steady CPU s, steady samples) for one decoder path."""
    limits = LimitsSettings(max_past_seconds=10 * 86400, max_future_seconds=10 * 86400)
    decoder = RemoteWriteDecoder(Validator(limits), native=native)
    max_bytes = 64 << 20
    t0 = time.perf_counter()
    for body in bodies:  # cold: one pass over every series
        decoder.decode_partial(decompress(body, "snappy", max_bytes=max_bytes), tenant="default")
    cold = time.perf_counter() - t0
    samples = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for body in bodies:
            batch, _refused = decoder.decode_partial(decompress(body, "snappy", max_bytes=max_bytes), tenant="default")
            samples += len(batch)
    return cold, time.perf_counter() - w0, time.process_time() - c0, samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000, help="steady-state samples decoded per path")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=5_000)
    ap.add_argument("--path", choices=["both", "pure", "native"], default="both")
    args = ap.parse_args()
    series = make_series(args.series)
    stream = sample_stream(series, time.time())
    n_bodies = max(1, args.series // args.batch)
    bodies = [encode_remote_write(list(itertools.islice(stream, args.batch)))[0] for _ in range(n_bodies)]
    rounds = max(1, args.samples // (n_bodies * args.batch))
    paths = ["pure", "native"] if args.path == "both" else [args.path]
    print(
        f"{len(bodies)} bodies of {args.batch} samples ({sum(map(len, bodies)) // len(bodies)} bytes snappy), x{rounds}"
    )
    for path in paths:
        if path == "native" and remote_write.native_module() is None:
            print("native: not built (rtpm.ingest._rwdecode missing)")
            continue
        cold, wall, cpu, n = run(bodies, path == "native", rounds)
        print(
            f"{path:6s}: {n / wall:12,.0f} samples/s  {cpu / n * 1e6:.3f} CPU-s per million  "
            f"{wall / n * 1e6:.3f} us/sample  (cold first pass {cold / (len(bodies) * args.batch) * 1e6:.2f} us/sample)"
        )


if __name__ == "__main__":
    main()
