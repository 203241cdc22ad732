"""Built-in device and link classes, and `resolve_profile` to combine and override them.

Numbers are typical values with their sources named beside them; "assumed" marks a
modelling choice with no single published figure (override it per scenario). Training
throughputs are *effective* (what a small CNN's training loop achieves), not peak.
Energy per FLOP and crypto power are above idle: (power under load - idle) / throughput.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from devices.specs import CRYPTO_FLOPS_PER_PARAM, BooleanNumberError, DeviceProfile, error_text, field_at

__all__ = [
    "DEVICE_CLASSES", "LINK_CLASSES", "ProfileError", "add_device_class", "add_link_class", "group_sizes", "remove_device_class",
    "remove_link_class", "resolve_profile", "suggest",
]


class ProfileError(ValueError):
    """An unknown class or a bad override; the message names it and what is allowed.

    `problems` lists each bad override as (dotted path inside the profile, e.g.
    "link.up_bps", the value given, what is wrong), so callers can report them at their
    own place in a larger file.
    """

    def __init__(self, message: str, problems: list[tuple[str, Any, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def suggest(name: str, known: Iterable[str], list_known: bool = True) -> str:
    """The list of known names and/or `did you mean 'x'?` when one of `known` is close to a mistyped `name`.

    With list_known False the list is given only when nothing is close.
    """
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else ""
    if close and not list_known:
        return hint
    return "; ".join(filter(None, [f"known: {', '.join(known)}", hint]))


def _radio_j_per_byte(power_w: float, bps: float) -> float:
    """Energy per byte of a radio drawing `power_w` while moving `bps` bit/s [J/byte]."""
    return power_w / (bps / 8.0)


def _huang_j_per_byte(alpha_mw_per_mbps: float, beta_mw: float, bps: float) -> float:
    """Energy per byte from Huang et al.'s power model P = alpha * throughput + beta [J/byte]."""
    return (alpha_mw_per_mbps * bps / 1e6 + beta_mw) * 1e-3 / (bps / 8.0)


# Smartphone throughput, calibrated from AI-Benchmark (phone_ai_benchmark.json, FLASH
# project): the median CPU float score of all 333 phones (1548) is 0.482 x the median
# Snapdragon 855 score (3212); a Snapdragon 855 is taken as 1e10 FLOP/s effective
# (assumed: ~3x a Raspberry Pi 4, matching the A76 vs A72 peak-FLOPS ratio).
_SMARTPHONE_FLOPS = 4.8e9
# LTE rates, calibrated from FLASH's 19 phones (phone_link_speed_kbps.json): medians of
# the per-phone means, 4318 kbit/s down and 3286 kbit/s up; median sd/mean 0.37 down,
# 0.40 up.
_LTE_DOWN_BPS, _LTE_UP_BPS, _LTE_CV = 4.32e6, 3.29e6, 0.38

_DEVICE_CLASSES: dict[str, dict[str, dict[str, Any]]] = {
    # Microcontroller node, ESP32-class (240 MHz Xtensa LX6 with single-precision FPU).
    # Espressif ESP32 datasheet v4, "Power consumption by power modes": ~50 mA at 3.3 V
    # with the CPU at 240 MHz (radio off) -> ~0.15 W; light sleep 0.8 mA, with periodic
    # wake-ups ~5 mW (assumed). Throughput 1e7 FLOP/s (assumed: a few cycles per useful
    # FLOP of plain-C training code). It cannot really train mnist_cnn (days per epoch).
    # Battery: one 18650 Li-ion cell, 3.0 Ah x 3.6 V = 10.8 Wh. Recharge: 0.5 W solar panel.
    "mcu": {
        "compute": {
            "flops_per_s": 1.0e7,
            "jitter_sigma": 0.05,
            "energy_per_flop_j": 0.15 / 1.0e7,
            "active_power_w": 0.15,
        },
        "battery": {
            "capacity_j": 3.0 * 3.6 * 3600,
            "idle_power_w": 0.005,
            "resume_fraction": 0.2,
            "recharge": {"kind": "solar", "panel_w": 0.5},
        },
    },
    # Raspberry Pi 3 Model B (4x Cortex-A53 1.2 GHz). Roy Longbottom's Raspberry Pi
    # benchmarks: HPL ~6 GFLOP/s; effective training taken as 25% -> 1.5e9 FLOP/s.
    # Power (Jeff Geerling, pidramble.com "Power Consumption Benchmarks"): idle 260 mA,
    # stress --cpu 4 730 mA at 5.1 V -> 1.4 W idle, 3.7 W under load. Mains-powered.
    "rpi3": {
        "compute": {
            "flops_per_s": 1.5e9,
            "jitter_sigma": 0.1,
            "energy_per_flop_j": (3.7 - 1.4) / 1.5e9,
            "active_power_w": 3.7 - 1.4,
        },
        "battery": {"capacity_j": None, "idle_power_w": 1.4},
    },
    # Raspberry Pi 4 Model B (4x Cortex-A72 1.5 GHz). Roy Longbottom: HPL ~13 GFLOP/s
    # (cooled); effective training 3.5e9 FLOP/s (~25%). pidramble.com: idle 540 mA,
    # stress 1280 mA at 5.1 V -> 2.7 W idle, 6.4 W under load. Mains-powered.
    "rpi4": {
        "compute": {
            "flops_per_s": 3.5e9,
            "jitter_sigma": 0.1,
            "energy_per_flop_j": (6.4 - 2.7) / 3.5e9,
            "active_power_w": 6.4 - 2.7,
        },
        "battery": {"capacity_j": None, "idle_power_w": 2.7},
    },
    # NVIDIA Jetson Nano (128-core Maxwell GPU, 4x Cortex-A57 1.43 GHz). NVIDIA Jetson
    # Nano module datasheet (DA-09366-001): 472 GFLOP/s FP16 peak (~236 FP32), 5 W/10 W
    # power modes. Effective GPU training 2e10 FLOP/s (~8% of FP32 peak, small batches;
    # assumed); 10 W under load, ~1.25 W idle. Crypto runs on the A57 CPU: charged at a
    # 3e9 FLOP/s CPU (a little below a Pi 4), at ~4 W total.
    "jetson_nano": {
        "compute": {
            "flops_per_s": 2.0e10,
            "jitter_sigma": 0.1,
            "energy_per_flop_j": (10.0 - 1.25) / 2.0e10,
            "crypto_s_per_param": CRYPTO_FLOPS_PER_PARAM / 3.0e9,
            "active_power_w": 4.0 - 1.25,
        },
        "battery": {"capacity_j": None, "idle_power_w": 1.25},
    },
    # Smartphone: throughput from AI-Benchmark (see _SMARTPHONE_FLOPS). Power: ~3 W with
    # the big CPU cores busy, ~50 mW suspended (Carroll & Heiser, "An analysis of power
    # consumption in a smartphone", USENIX ATC 2010, scaled to current phones; assumed).
    # Battery: 4000 mAh x 3.85 V = 15.4 Wh. Charged overnight, 22:00-07:00, at 10 W (5 V 2 A).
    "smartphone": {
        "compute": {
            "flops_per_s": _SMARTPHONE_FLOPS,
            "jitter_sigma": 0.2,
            "energy_per_flop_j": (3.0 - 0.05) / _SMARTPHONE_FLOPS,
            "active_power_w": 3.0 - 0.05,
        },
        "battery": {
            "capacity_j": 4.0 * 3.85 * 3600,
            "initial_fraction": 0.8,
            "idle_power_w": 0.05,
            "resume_fraction": 0.2,
            "recharge": {"kind": "mains", "windows": [[22.0, 7.0]], "power_w": 10.0},
        },
    },
    # Laptop, 4-core x86 with AVX2 (~300 GFLOP/s FP32 peak); effective training 3e10
    # FLOP/s (10%, assumed). ~35 W under load, ~4 W idle (typical 28-45 W TDP parts).
    # Battery 60 Wh; plugged in 08:00-18:00 at 65 W (USB-C charger; assumed schedule).
    "laptop": {
        "compute": {
            "flops_per_s": 3.0e10,
            "jitter_sigma": 0.15,
            "energy_per_flop_j": (35.0 - 4.0) / 3.0e10,
            "active_power_w": 35.0 - 4.0,
        },
        "battery": {
            "capacity_j": 60.0 * 3600,
            "idle_power_w": 4.0,
            "resume_fraction": 0.1,
            "recharge": {"kind": "mains", "windows": [[8.0, 18.0]], "power_w": 65.0},
        },
    },
}

_LINK_CLASSES: dict[str, dict[str, Any]] = {
    # LoRaWAN EU868 DR5 (SF7, 125 kHz): 5470 bit/s PHY rate (LoRa Alliance RP002
    # Regional Parameters); the 1% duty-cycle limit is not applied (override the rates
    # to ~55 bit/s to model it). Class A receive window opens 1 s after an uplink.
    # Semtech SX1276 datasheet: TX +13 dBm 29 mA, RX 10.8 mA at 3.3 V.
    # Outages: assumed 1 h up, 5 min down on average.
    "lora": {
        "down_bps": 5470.0,
        "up_bps": 5470.0,
        "latency_s": 1.0,
        "mean_up_s": 3600.0,
        "mean_down_s": 300.0,
        "tx_j_per_byte": _radio_j_per_byte(0.029 * 3.3, 5470.0),
        "rx_j_per_byte": _radio_j_per_byte(0.0108 * 3.3, 5470.0),
    },
    # NB-IoT Cat-NB1 (3GPP Rel-13, TS 36.306): peak 26 kbit/s down, 62.5 kbit/s up
    # (multi-tone). Latency: 3GPP TR 45.820 targets < 10 s; ~2 s typical (assumed).
    # Quectel BC95 hardware design manual: ~220 mA TX at 23 dBm, ~60 mA RX, 3.6 V.
    # Outages: assumed 2 h up, 2 min down.
    "nbiot": {
        "down_bps": 26.0e3,
        "up_bps": 62.5e3,
        "latency_s": 2.0,
        "bandwidth_cv": 0.3,
        "mean_up_s": 7200.0,
        "mean_down_s": 120.0,
        "tx_j_per_byte": _radio_j_per_byte(0.220 * 3.6, 62.5e3),
        "rx_j_per_byte": _radio_j_per_byte(0.060 * 3.6, 26.0e3),
    },
    # LTE-M Cat-M1 (3GPP Rel-13) half-duplex: ~300 kbit/s down, ~375 kbit/s up; latency
    # ~150 ms (assumed typical). u-blox SARA-R4 data sheet: ~190 mA TX at 23 dBm, ~70 mA RX,
    # 3.8 V (approx.). Outages: assumed 2 h up, 1 min down.
    "ltem": {
        "down_bps": 300.0e3,
        "up_bps": 375.0e3,
        "latency_s": 0.15,
        "bandwidth_cv": 0.3,
        "mean_up_s": 7200.0,
        "mean_down_s": 60.0,
        "tx_j_per_byte": _radio_j_per_byte(0.190 * 3.8, 375.0e3),
        "rx_j_per_byte": _radio_j_per_byte(0.070 * 3.8, 300.0e3),
    },
    # LTE on phones: rates and spread calibrated from FLASH's phone traces (see
    # _LTE_DOWN_BPS). Latency and energy: Huang et al., "A Close Examination of
    # Performance and Power Characteristics of 4G LTE Networks", MobiSys 2012: RTT ~70 ms;
    # P_up = 438.39 mW/Mbps x throughput + 1288.04 mW, P_down = 51.97 mW/Mbps x + 1288.04 mW.
    # Outages: assumed 30 min up, 20 s down.
    "lte": {
        "down_bps": _LTE_DOWN_BPS,
        "up_bps": _LTE_UP_BPS,
        "latency_s": 0.07,
        "bandwidth_cv": _LTE_CV,
        "mean_up_s": 1800.0,
        "mean_down_s": 20.0,
        "tx_j_per_byte": _huang_j_per_byte(438.39, 1288.04, _LTE_UP_BPS),
        "rx_j_per_byte": _huang_j_per_byte(51.97, 1288.04, _LTE_DOWN_BPS),
    },
    # Wi-Fi (802.11n/ac home network): 50 Mbit/s down, 20 Mbit/s up, 20 ms (assumed
    # typical). Energy: Huang et al. 2012 Wi-Fi model, P_up = 283.17 mW/Mbps x + 132.86 mW,
    # P_down = 137.01 mW/Mbps x + 132.86 mW. Outages: assumed 2 h up, 10 s down.
    "wifi": {
        "down_bps": 50.0e6,
        "up_bps": 20.0e6,
        "latency_s": 0.02,
        "bandwidth_cv": 0.3,
        "mean_up_s": 7200.0,
        "mean_down_s": 10.0,
        "tx_j_per_byte": _huang_j_per_byte(283.17, 132.86, 20.0e6),
        "rx_j_per_byte": _huang_j_per_byte(137.01, 132.86, 50.0e6),
    },
    # Gigabit Ethernet: ~941 Mbit/s TCP goodput (1000BASE-T, 1500-byte MTU), 0.5 ms
    # LAN latency, no outages. ~0.5 W for a 1000BASE-T PHY at full load (IEEE 802.3az
    # studies; approx.).
    "ethernet": {
        "down_bps": 941.0e6,
        "up_bps": 941.0e6,
        "latency_s": 0.0005,
        "mean_down_s": 0.0,
        "tx_j_per_byte": _radio_j_per_byte(0.5, 941.0e6),
        "rx_j_per_byte": _radio_j_per_byte(0.5, 941.0e6),
    },
}

DEVICE_CLASSES: Mapping[str, Mapping[str, Any]] = MappingProxyType(_DEVICE_CLASSES)
LINK_CLASSES: Mapping[str, Mapping[str, Any]] = MappingProxyType(_LINK_CLASSES)
_SECTIONS = ("compute", "battery", "link")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `over` into a copy of `base`; a sub-mapping with another 'kind' replaces it."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping) and value.get("kind", old.get("kind")) == old.get(
            "kind"
        ):
            out[key] = _merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _problems(exc: ValidationError) -> list[tuple[str, Any, str]]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc if p not in ("mains", "solar"))  # not the union tags of `recharge`
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, BooleanNumberError):
            out.append((f"{path}.{cause.field}".lstrip("."), cause.value, "a boolean where a number belongs"))
        elif err["type"] == "extra_forbidden":
            holder, _ = field_at(DeviceProfile, loc)
            known = list(holder.model_fields) if holder is not None else []
            out.append((path, err.get("input"), "unknown setting; " + suggest(str(loc[-1]), known, list_known=False)))
        else:
            out.append((path, err.get("input"), error_text(err, field_at(DeviceProfile, loc)[1])))
    return out


def _format_errors(problems: list[tuple[str, Any, str]], where: str) -> str:
    lines = [f"invalid overrides for {where}:"]
    for path, value, msg in problems:
        lines.append(f"  - {path}: {msg}" if msg.startswith("unknown setting") else f"  - {path} = {value!r}: {msg}")
    return "\n".join(lines)


def group_sizes(shares: Sequence[float], total: int) -> list[int]:
    """Split `total` by `shares` with the largest-remainder method (sizes sum to total)."""
    exact = [s * total for s in shares]
    sizes = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in order[: total - sum(sizes)]:
        sizes[i] += 1
    return sizes


def add_device_class(name: str, numbers: Mapping[str, Any]) -> None:
    """Add (or replace) device class `name`: {"compute": {...}, "battery": {...}} with the fields of ComputeSpec
    and BatterySpec, and optionally "sessions": (mean online s, mean offline s) for churn; ProfileError if invalid."""
    from devices.sessions import CLASS_SESSION_MEANS

    unknown = set(numbers) - {"compute", "battery", "sessions"}
    if unknown:
        raise ProfileError(f"device class {name!r}: unknown part(s) {', '.join(sorted(unknown))}; give compute, "
                           "battery and sessions")
    entry: dict[str, Any] = {"compute": dict(numbers.get("compute") or {}), "battery": dict(numbers.get("battery") or {})}
    _check(entry, f"device class {name!r}")
    sessions = numbers.get("sessions")
    if sessions is not None:
        on, off = (float(x) for x in sessions)
        if not (on > 0 and off >= 0):
            raise ProfileError(f"device class {name!r}: sessions {tuple(sessions)} must be (online s > 0, offline s >= 0)")
        CLASS_SESSION_MEANS[name] = (on, off)
        entry["sessions"] = (on, off)
    _DEVICE_CLASSES[name] = entry


def remove_device_class(name: str) -> None:
    """Remove device class `name` (a plugin's, after use)."""
    from devices.sessions import CLASS_SESSION_MEANS

    _DEVICE_CLASSES.pop(name, None)
    CLASS_SESSION_MEANS.pop(name, None)


def remove_link_class(name: str) -> None:
    """Remove link class `name` (a plugin's, after use)."""
    _LINK_CLASSES.pop(name, None)


def add_link_class(name: str, numbers: Mapping[str, Any]) -> None:
    """Add (or replace) link class `name` with the fields of LinkSpec; ProfileError if invalid."""
    entry = dict(numbers)
    _check({"compute": {}, "battery": {}, "link": entry}, f"link class {name!r}")
    _LINK_CLASSES[name] = entry


def _check(raw: Mapping[str, Any], where: str) -> DeviceProfile:
    """The profile of `raw` (compute, battery and maybe link numbers); ProfileError naming every problem."""
    try:
        return DeviceProfile.model_validate({"link": {}, **raw})
    except ValidationError as exc:
        problems = _problems(exc)
        raise ProfileError(_format_errors(problems, where), problems) from None


def resolve_profile(
    device_class: str, link_class: str, overrides: Mapping[str, Mapping[str, Any] | None] | None = None
) -> DeviceProfile:
    """The profile of a device class on a link class, with `overrides` applied.

    overrides: {"compute": {...}, "battery": {...}, "link": {...}}, each mapping field
    names of that spec to new values (a "recharge" mapping merges into the class's
    recharge when its "kind" matches, else replaces it).
    """
    if device_class not in DEVICE_CLASSES:
        raise ProfileError(f"unknown device class {device_class!r}; {suggest(str(device_class), DEVICE_CLASSES)}")
    if link_class not in LINK_CLASSES:
        raise ProfileError(f"unknown link class {link_class!r}; {suggest(str(link_class), LINK_CLASSES)}")
    numbers = {k: v for k, v in DEVICE_CLASSES[device_class].items() if k != "sessions"}
    raw: dict[str, Any] = {**copy.deepcopy(numbers), "link": dict(LINK_CLASSES[link_class])}
    for section, values in (overrides or {}).items():
        if section not in _SECTIONS:
            raise ProfileError(f"unknown override section {section!r}; use one of: {', '.join(_SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ProfileError(f"overrides.{section} must be a mapping of field: value, got {values!r}")
        raw[section] = _merge(raw[section], values)
    return _check(raw, f"device class {device_class!r} on link {link_class!r}")
