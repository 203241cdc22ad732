"""The SHE key-recovery attack: from the server's public view only, it factors N and recovers L at
both parameter sets (paper: K = 10 and 64; high_throughput: K = 10) and decrypts a client's update.
The recovered key is compared with the real one only after the attack returned."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from crypto import HIGH_THROUGHPUT_PARAMS, PAPER_PARAMS, make_secure_aggregation
from crypto.attacks import (
    AttackError,
    AttackUnavailable,
    RecoveredKey,
    ServerView,
    attack_payloads,
    decrypt_update,
    recover_key,
)
from sim.cli import main

pytest.importorskip("flint")


def _server_view(params, clients: int, num_values: int, seed: int):
    """K clients each send the server one update; returns what the server holds, and (for the check) the truth."""
    holder, server = make_secure_aggregation("real", params, num_values=num_values, max_clients=clients, seed=seed)
    rng = np.random.default_rng(seed)
    updates = [rng.normal(0.0, 0.1, num_values) for _ in range(clients)]
    received = [holder.encrypt(u) for u in updates]
    view = ServerView(server.public, server.encoder.layout, server.encoder.max_quantized,
                      tuple(c for vec in received for c in vec.body), server.encoder.tag_values)
    return view, received, updates, holder._cipher.secret


@pytest.mark.parametrize("clients", [10, 64])
def test_paper_parameters_key_recovered_and_an_update_decrypted(clients):
    view, received, updates, secret = _server_view(PAPER_PARAMS, clients, 300, seed=clients)
    key = recover_key(view)  # sees only `view`
    victim = decrypt_update(key, view.layout, received[3].body, view.tag_values)
    assert (key.p, key.q, key.L) == (secret.p, secret.q, secret.L)
    assert np.abs(victim - updates[3]).max() <= 2.0 ** -(view.layout.scale_bits + 1) * (1 + 1e-9)
    assert key.ciphertexts_used == 1 and "Coppersmith" in key.method


def test_high_throughput_parameters_key_recovered_and_an_update_decrypted():
    view, received, updates, secret = _server_view(HIGH_THROUGHPUT_PARAMS, 10, 2000, seed=5)
    key = recover_key(view)
    assert (key.p, key.q, key.L) == (secret.p, secret.q, secret.L)
    victim = decrypt_update(key, view.layout, received[4].body, view.tag_values)
    assert np.abs(victim - updates[4]).max() <= 2.0 ** -(view.layout.scale_bits + 1) * (1 + 1e-9)
    with pytest.raises(AttackError, match="L was not recovered"):
        decrypt_update(RecoveredKey(key.p, key.q, None, key.method, 0), view.layout, view.ciphertexts[:8])


def test_too_few_ciphertexts_and_a_missing_lattice_library_are_clear_errors(monkeypatch):
    view, *_ = _server_view(HIGH_THROUGHPUT_PARAMS, 2, 100, seed=6)
    with pytest.raises(AttackError, match="needs 28 ciphertexts, got 4"):
        recover_key(view)
    monkeypatch.setitem(sys.modules, "flint", None)
    with pytest.raises(AttackUnavailable, match="pip install"):
        recover_key(view)


def test_attack_on_saved_payloads(tmp_path):
    view, received, updates, _ = _server_view(PAPER_PARAMS, 3, 50, seed=8)
    demo = attack_payloads([v.to_bytes() for v in received], view.public)
    assert np.abs(demo.decrypted - updates[0]).max() <= 2.0**-17 * (1 + 1e-9)


def test_cli_attack_high_throughput_prints_l_correct(capsys):
    assert main(["attack", "--params", "high_throughput", "--clients", "10", "--seed", "2", "--values", "1500"]) == 0
    out = capsys.readouterr().out
    assert "L recovered (1800 bits)" in out and "p correct, L correct" in out
    assert "decrypt the first client's update: 1,500 values" in out


def test_cli_attack_reports_each_step(capsys, tmp_path):
    assert main(["attack", "--params", "paper", "--clients", "10", "--seed", "1", "--values", "200"]) == 0
    out = capsys.readouterr().out
    assert "p recovered (2048 bits)" in out and "L recovered (160 bits)" in out
    assert "checked against the real key after the attack returned: p correct, L correct" in out
    view, received, _, _ = _server_view(PAPER_PARAMS, 2, 40, seed=9)
    files = []
    for i, vec in enumerate(received):
        files += ["--payload", str(tmp_path / f"u{i}.bin")]
        (tmp_path / f"u{i}.bin").write_bytes(vec.to_bytes())
    (tmp_path / "n.txt").write_text(hex(view.public.n))
    assert main(["attack", *files, "--modulus", str(tmp_path / "n.txt")]) == 0
    assert "decrypt the first client's update: 40 values" in capsys.readouterr().out
    assert main(["attack", *files]) == 2
    assert "--payload needs --modulus" in capsys.readouterr().err
