"""Replay the reference code's slot bookkeeping (no training) and count what its runs did.

The reference code (MiaoGroup-XDU/acc-improved-ppafl) keeps, per slot of 20, a delayed flag,
the rounds of delay left and a time stamp. This script follows the same rules, written
afresh from reading it, for the scheme's delay guard (a new batch only when no slot is
delayed) and for its baselines' top-up (every round), and reports, over seeded replays:
- delayed slots at the start of a round (after that round's draw);
- agents per round (delayed slots not arriving, within the threshold, rounds < 100);
- the share of the scheme's trainings that take the branch with learning rate 0.02 (its
  baselines train everything at the command line's 0.01).
docs/reproduction.md quotes its output:  python scripts/reference_replay.py
"""

from __future__ import annotations

import argparse
import json

import numpy as np

SLOTS = 20


def replay(guard: bool, fraction: float, max_delay: int, threshold: int, agents_before: int, rounds: int,
           seed: int) -> dict[str, float]:
    rng = np.random.RandomState(seed)
    delayed = [False] * SLOTS
    left = [0] * SLOTS  # rounds of delay left
    stamp = [0] * SLOTS  # the round the slot last took part in, or the round its delay began
    counts, agent_counts = [], []
    fast_lr = trainings = 0
    for i in range(rounds):
        agents = []
        if i > 0:
            busy = sum(delayed)
            if not guard or busy == 0:
                for s in rng.permutation(SLOTS)[: int(SLOTS * fraction - busy)]:
                    if not delayed[s]:
                        delayed[s], stamp[s] = True, i
            for s in range(SLOTS):
                if delayed[s] and left[s] == 0:
                    left[s] = rng.permutation(max_delay)[0] + 1
            waiting = [s for s in range(SLOTS) if delayed[s]]
            counts.append(len(waiting))
            arriving = []
            for s in waiting:
                left[s] -= 1
                if left[s] == 0:
                    arriving.append(s)
                    delayed[s] = False
            if i < agents_before:
                agents = [s for s in waiting if s not in arriving and (i + 1) - stamp[s] <= threshold]
            agent_counts.append(len(agents))
        present = [s for s in range(SLOTS) if not delayed[s]]
        for s in present + agents:
            trainings += 1
            fast_lr += not (i - stamp[s] == 1 or i == 0)  # the reference code's "not delayed" test
        for s in present:
            stamp[s] = i + 1
    return {"delayed_per_round": float(np.mean(counts)), "agents_per_round": float(np.mean(agent_counts)),
            "share_lr_0.02": fast_lr / trainings, "trainings": trainings}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fraction", type=float, default=0.4)
    p.add_argument("--replays", type=int, default=50)
    args = p.parse_args()
    out = {}
    for name, guard in (("scheme (new batch when none delayed)", True), ("baselines (top up every round)", False)):
        runs = [replay(guard, args.fraction, 4, 6, 100, 100, seed) for seed in range(args.replays)]
        out[name] = {k: round(float(np.mean([r[k] for r in runs])), 3) for k in runs[0] if k != "trainings"}
    print(json.dumps({"fraction": args.fraction, "replays": args.replays, **out}, indent=2))


if __name__ == "__main__":
    main()
