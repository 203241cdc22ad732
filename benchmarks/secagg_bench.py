"""SecAgg+ against shared-key BFV on the quickstart model (mnist_2nn, 199,210 parameters), one core.

One cohort of `--devices` devices (default 100), `--drop` of them (default 10%) dropping out
before the masked upload, in real and in modeled mode, and in the same run shared-key BFV
(compact) encrypting the same update: upload bytes per device against the plaintext float32
update and against BFV (and authority BFV's public-key encryption), device compute per update (real: measured seconds of one device's four
stages, median over devices; the calibrated `OP_SECONDS` price of its operations), the server's
unmasking time, and whether real and modeled aggregates are bit-identical. `--calibrate` measures
the per-operation seconds (`crypto.secagg.OP_SECONDS`). Ratios are against baselines measured in
this run; the last line is JSON.

    python benchmarks/secagg_bench.py [--devices 100] [--drop 0.1] [--calibrate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from crypto import BFV_COMPACT, BFV_WIDE, make_secure_aggregation
from crypto.authority import make_authority_aggregation
from crypto.integrity import IntegrityKey, IntegrityVerifier, TagLayout
from crypto.randomness import RandomSource
from crypto.secagg import OP_SECONDS, SecAggConfig, SecAggDevice, SecAggServer, StageCost, _agree, _pack, _prg
from crypto.shamir import reconstruct_bytes, share_bytes

MNIST_2NN = 199_210


def cohort(mode: str, n: int, drop: int, updates: list[np.ndarray], key: IntegrityKey):
    """One cohort; the last `drop` devices drop before the masked upload. Returns (sums, per-device costs, server s)."""
    cfg = SecAggConfig(MNIST_2NN, n)
    layout = TagLayout.for_bound(cfg.encoder.max_quantized)
    devices = [SecAggDevice(cfg, d, mode, key.tagger(d, layout), RandomSource(10_000 + d)) for d in range(n)]
    server = SecAggServer(cfg, list(range(n)), mode, RandomSource(1))
    costs: dict[int, list[StageCost]] = {d: [] for d in range(n)}

    def stage(call, items):
        out = []
        for d, arg in items:
            msg, cost = call(devices[d], *arg)
            costs[d].append(cost)
            out.append(msg)
        return out

    keys = server.receive_keys(stage(SecAggDevice.advertise_keys, [(d, ()) for d in range(n)]))
    routed = server.receive_shares(stage(SecAggDevice.share_keys, [(d, (keys[d],)) for d in range(n)]),
                                   {d: 1 + d % 255 for d in range(n)})
    alive = range(n - drop)
    requests = server.receive_masked(stage(SecAggDevice.masked_input, [(d, (routed[d], updates[d])) for d in alive]))
    start = time.process_time()
    agg = server.receive_unmask(stage(SecAggDevice.unmask, [(d, (requests[d],)) for d in alive]))
    server_s = time.process_time() - start
    values = agg.open(IntegrityVerifier(key, layout, 3))
    return cfg, agg.sums, values, costs, server_s


def calibrate() -> dict[str, float]:
    """Seconds per operation on this core (the `OP_SECONDS` table)."""
    from cryptography.hazmat.primitives.asymmetric import x25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    def per(fn, reps):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps

    a, b = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    pub = b.public_key().public_bytes_raw()
    xs = list(range(1, 22))
    shares = share_bytes(bytes(32), 11, xs)
    gcm, plain = AESGCM(bytes(32)), bytes(82)
    n = 1 << 20
    cfg = SecAggConfig(MNIST_2NN, 100)
    layout = TagLayout.for_bound(cfg.encoder.max_quantized)
    tagger = IntegrityKey.generate(b"calibrate").tagger(0, layout)
    update = np.random.default_rng(0).normal(0, 0.05, MNIST_2NN)

    def per_value_work():  # what a device does per value besides the PRG: quantize, tag, weight, pack
        q = cfg.encoder.quantize(update)
        tagger._alpha = None  # a device derives alpha once per cohort
        x = 3 * np.concatenate([q, layout.digits(tagger.tags(q, 1))])
        _pack(x.astype(np.uint64) & np.uint64((1 << cfg.mod_bits) - 1), cfg.mod_bits)

    return {
        "keygen": per(x25519.X25519PrivateKey.generate, 2000),
        "agree": per(lambda: _agree(a, pub, b"x"), 2000),
        "share": per(lambda: share_bytes(bytes(32), 11, xs), 200) / len(xs),
        "reconstruct": per(lambda: reconstruct_bytes(dict(list(shares.items())[:11]), 11), 200),
        "aead": per(lambda: gcm.encrypt(bytes(12), plain, None), 20000),
        "prg_value": per(lambda: _prg(bytes(32), n, (1 << 35) - 1), 20) / n,
        "value": per(per_value_work, 5) / cfg.wire_values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--drop", type=float, default=0.1)
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.devices} devices, {args.drop:.0%} drop before upload")
    if args.calibrate:
        print("seconds per operation:", {k: f"{v:.3g}" for k, v in calibrate().items()})
    n, drop = args.devices, round(args.devices * args.drop)
    rng = np.random.default_rng(0)
    updates = [rng.normal(0, 0.05, MNIST_2NN).astype(np.float32) for _ in range(n)]
    key = IntegrityKey.generate(b"bench")

    holder, _ = make_secure_aggregation("real", BFV_COMPACT, num_values=MNIST_2NN, max_clients=n)
    start = time.process_time()
    bfv_vec = holder.encrypt(updates[0], 0)
    bfv_s = time.process_time() - start
    authority, _ = make_authority_aggregation("real", BFV_WIDE, num_values=MNIST_2NN, max_clients=n)
    device = authority.enroll(0)
    start = time.process_time()
    authority_vec = device.encrypt(updates[0])
    authority_s = time.process_time() - start

    cfg, real_sums, real_values, costs, server_s = cohort("real", n, drop, updates, key)
    _, modeled_sums, _, modeled_costs, _ = cohort("modeled", n, drop, updates, key)
    identical = real_sums.tobytes() == modeled_sums.tobytes()
    expected = sum((1 + d % 255) * cfg.encoder.quantize(updates[d]) for d in range(n - drop))
    exact = bool(np.array_equal(real_values, expected))

    plain = 4 * MNIST_2NN
    survivors = range(n - drop)
    sent = [sum(c.sent_bytes for c in costs[d]) for d in survivors]
    measured = [sum(c.measured_s or 0.0 for c in costs[d]) for d in survivors]
    priced = [sum(c.seconds() for c in costs[d]) for d in survivors]
    same_ops = all([c.ops for c in costs[d]] == [c.ops for c in modeled_costs[d]] for d in costs)
    up = statistics.median(sent)
    figures = {
        "devices": n, "dropped_before_upload": drop, "neighbours": cfg.k, "threshold": cfg.t, "mod_bits": cfg.mod_bits,
        "upload_bytes_per_device": up, "upload_vs_float32": up / plain, "upload_vs_bfv_compact": up / bfv_vec.nbytes,
        "bfv_compact_bytes": bfv_vec.nbytes, "bfv_compact_encrypt_s": bfv_s,
        "authority_bfv_wide_bytes": authority_vec.nbytes, "authority_bfv_wide_encrypt_s": authority_s,
        "device_s_measured_median": statistics.median(measured), "device_s_priced_median": statistics.median(priced),
        "server_unmask_cpu_s": server_s, "real_equals_modeled": identical, "aggregate_exact": exact,
        "costs_identical_between_modes": same_ops, "op_seconds": OP_SECONDS,
    }
    print(f"SecAgg+ k={cfg.k} t={cfg.t} b={cfg.mod_bits} bits: upload {up:,.0f} B per device = "
          f"{figures['upload_vs_float32']:.3f}x float32 ({plain:,} B), {figures['upload_vs_bfv_compact']:.3f}x "
          f"shared-key BFV compact ({bfv_vec.nbytes:,} B)")
    print(f"device compute per update: measured {figures['device_s_measured_median']:.3f} s (median of "
          f"{len(measured)}), priced {figures['device_s_priced_median']:.3f} s; BFV compact encryption "
          f"{bfv_s:.3f} s CPU; server unmasking {server_s:.2f} s CPU")
    print(f"authority BFV (wide, public-key encryption): {authority_vec.nbytes:,} B per update, "
          f"{authority_s:.3f} s CPU to encrypt")
    print(f"real == modeled bit for bit: {identical}; aggregate equals the survivors' sum: {exact}; "
          f"per-stage operations identical between modes: {same_ops}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
