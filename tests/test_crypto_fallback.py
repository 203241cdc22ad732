"""crypto without gmpy2 (a lent GPU machine may lack it): pure-Python primes give the same keys, and every
scheme works. The import-free run happens in a subprocess where gmpy2 cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crypto import SHEParams, bigint, keygen

gmpy2 = pytest.importorskip("gmpy2")

MEDIUM = SHEParams("test-1024", k0=1024, k1=20, k2=160, r_bits=160)
ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    sys.modules["gmpy2"] = None  # any `import gmpy2` now raises ImportError
    import numpy as np
    from crypto import BFV_COMPACT, SHEParams, keygen, make_secure_aggregation
    from crypto.bigint import HAVE_GMPY2
    sk, pk = keygen(SHEParams("test-1024", k0=1024, k1=20, k2=160, r_bits=160), seed=12)
    update = np.linspace(-1, 1, 30)
    ok = {}
    for name, params, modes in (("she", SHEParams("test-1024", 1024, 20, 160, 160), ("real", "modeled")),
                                ("bfv", BFV_COMPACT, ("real", "modeled") if importlib.util.find_spec("tenseal")
                                 else ("modeled",))):
        for mode in modes:
            holder, server = make_secure_aggregation(mode, params, num_values=30, max_clients=3, seed=2)
            avg = holder.decrypt_average(server.weighted_sum([holder.encrypt(update)] * 2, [3, 1]))
            ok[f"{name}-{mode}"] = bool(np.abs(avg - update).max() <= 2.0**-17)
    print(json.dumps({"gmpy2": HAVE_GMPY2, "p": str(sk.p), "L": str(sk.L), "ok": ok}))
""")


def test_without_gmpy2_keys_are_the_same_and_every_scheme_works():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, check=True,
                         timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    sk, _ = keygen(MEDIUM, seed=12)
    assert result["gmpy2"] is False
    assert (int(result["p"]), int(result["L"])) == (int(sk.p), int(sk.L))
    expected = {"she-real", "she-modeled", "bfv-modeled"} | ({"bfv-real"} if _has("tenseal") else set())
    assert result["ok"] == dict.fromkeys(expected, True)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_python_primality_and_next_prime_agree_with_gmpy2(monkeypatch):
    import random

    draw = random.Random(4)
    values = [draw.getrandbits(bits) for bits in (2, 5, 11, 31, 33, 64, 81, 100, 300, 700) for _ in range(25)]
    values += [2, 3, 4, 1999, 2003, 3317044064679887385961981, 2**61 - 1, 2**89 - 1]
    assert [bigint._is_prime_python(v) for v in values] == [bool(gmpy2.is_prime(v, 30)) for v in values]
    monkeypatch.setattr(bigint, "_gmpy2", None)
    for v in values[::5]:
        assert int(bigint.next_prime(v)) == int(gmpy2.next_prime(v)), v
