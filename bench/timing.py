"""Is there a timing oracle? Median verification time of an unknown key id, a known id
with a wrong secret, a revoked key and a valid key, interleaved.

    python -m bench.timing [--calls N] [--rounds R]

The first three should be indistinguishable within noise (the valid key is shown for
scale). They run the same code: one HMAC and one constant-time comparison each.
"""

from __future__ import annotations

import argparse
import statistics
import time

from guard import Keys, TokenCodec
from stores import MemoryStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    codec = TokenCodec(["s" * 32], ["p" * 32])
    keys = Keys(MemoryStore(), codec)
    valid, record = keys.create("valid")
    revoked, gone = keys.create("revoked")
    keys.revoke(gone.key_id)
    cases = {
        "unknown key id": codec.issue("ffffffffffffffff").token,
        "known id, wrong secret": codec.issue(record.key_id).token,
        "revoked key": revoked,
        "valid key": valid,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, token in cases.items():
            start = time.perf_counter_ns()
            for _ in range(args.calls):
                keys.verify(token)
            samples[name].append((time.perf_counter_ns() - start) / args.calls)
    print(f"{'case':<24} {'median ns':>10} {'stdev ns':>9}")
    for name, values in samples.items():
        print(f"{name:<24} {statistics.median(values):>10.0f} {statistics.stdev(values):>9.0f}")


if __name__ == "__main__":
    main()
