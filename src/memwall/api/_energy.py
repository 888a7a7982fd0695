"""The energy block `analyze`, `parallel` and `serve` add to their output: joules per token (and
per request), average power and, with a device-hour price, dollars per million tokens, all
predicted by `memwall.energy` from the work counted and the time predicted (policy: which
tokens a workload is priced per, and what each command says it assumed)."""

from __future__ import annotations

from typing import Any

from memwall.errors import MemwallError

NOTE = (
    "predicted, not measured: FLOPs x J/FLOP + bytes x J/byte (DRAM, on-chip, links) + static "
    "power x predicted time, capped at the TDP; coefficients and their sources: "
    "data/energy.json (energy.coefficients in --format json)"
)


def needs_device(price_per_hour: float | None, device: Any) -> None:
    """--price-per-hour prices predicted time on a device: refused without one. (memwall.energy
    is imported only when a price is given: a plain count stays light.)"""
    if price_per_hour is None:
        return
    from memwall.energy import check_price

    check_price(price_per_hour)
    if device is None:
        raise MemwallError("--price-per-hour needs --device (it prices the predicted time there)")


def _tokens(wl: Any) -> tuple[float, str, float]:
    """Tokens a workload is priced per, what they are, and the requests (sequences)."""
    if wl.phase == "generate":
        return float(wl.batch * wl.gen_len), "output", float(wl.batch)
    if wl.phase == "decode":
        return float(wl.batch), "output", float(wl.batch)
    return float(wl.batch * max(wl.seq_len, 1)), "input", float(wl.batch)


def analyze_energy(ops: Any, pred: Any, wl: Any, prec: Any, price: float | None) -> dict:
    """Energy of the analysed workload on the prediction's device over its predicted time."""
    from memwall.energy import per_token, step_energy, work_from_ops

    dev = pred.device
    e = step_energy(work_from_ops(ops, dev, prec), float(pred.totals["time"]), dev, 1)
    tokens, what, requests = _tokens(wl)
    out = per_token(e, tokens, requests, price, what)
    out["per_request_covers"] = (
        "the generated tokens of one sequence (the prompt's prefill is --phase prefill)"
        if wl.phase == "generate" else f"one sequence of this {wl.phase}"
    )  # fmt: skip
    return _finish(out, e, dev, what)


def parallel_energy(spec: Any, dev: Any, plan: Any, price: float | None) -> dict:
    """Energy of a plan: per output token of its decode step (and per prompt token of its
    prefill) in inference, per trained token in training."""
    from memwall.energy import per_token
    from memwall.parallel.energy import plan_energy

    pe = plan_energy(spec, dev, plan)
    o = plan.options
    if plan.mode == "train":
        out = per_token(pe["train_step"], plan.tokens, None, price, "trained")
        out["assumption"] = pe["assumption"]
        return _finish(out, pe["train_step"], dev, "trained")
    if "decode_step" not in pe:  # an encoder: one pass over its inputs, priced per input token
        out = per_token(pe["prefill"], float(o.batch * o.seq_len), None, price, "input")
        return _finish(out, pe["prefill"], dev, "input")
    out = per_token(pe["decode_step"], float(o.batch), None, price, "output")
    pre = per_token(pe["prefill"], float(o.batch * o.seq_len), None, price, "prompt")
    out["prefill"] = {k: v for k, v in pre.items() if k != "predicted"}
    out["prefill"]["step"] = pe["prefill"].to_dict()
    return _finish(out, pe["decode_step"], dev, "output")


def serve_energy(cfg: Any, trace: Any, m: dict, req: dict, price: float | None) -> dict:
    """Energy of a whole simulated run: the steps' work and predicted time, the idle time."""
    from memwall.energy import per_token
    from memwall.serve.energy import run_energy

    inst = getattr(trace, "instances", 1)  # disaggregation: P + D servers of tp devices
    run = run_energy(cfg.spec, cfg.device, cfg.precision, cfg.tp, trace.arrays(),
                     cfg.kv.block_size, float(m["duration"]), inst)  # fmt: skip
    out_tokens = float(req["output_len"].sum())
    n = float(len(req["output_len"]))
    if out_tokens <= 0:
        raise MemwallError("the run produced no output tokens: nothing to price per token")
    e = run.busy
    out = per_token(e, out_tokens, n, price, "output")
    total = run.total_j
    out.update(
        j_per_output_token=total / out_tokens,
        j_per_output_token_range=[(e.low.total_j + run.idle_j) / out_tokens,
                                  (e.high.total_j + run.idle_j) / out_tokens],
        j_per_request=total / n,
        energy_j=total,
        idle_j=run.idle_j,
        idle_s=run.idle_s,
        avg_power_w=total / float(m["duration"]),
    )  # fmt: skip
    out["devices"] = e.devices * inst
    out["avg_power_per_device_w"] = out["avg_power_w"] / (e.devices * inst)
    if price is not None:  # the devices are paid for over the whole run, idle or not
        hours = float(m["duration"]) * e.devices * inst / 3600.0
        out["usd_per_million_output_tokens"] = price * hours / out_tokens * 1e6
    out["counted"] = (
        "per step: weights once, each token's FLOPs and activations (no attention FLOPs), "
        "the KV blocks in use; idle time at idle power"
    )
    return _finish(out, e, cfg.device, "output")


def _finish(out: dict, e: Any, dev: Any, what: str) -> dict:
    from memwall.energy import describe, sources_for

    out["step"] = e.to_dict()
    out["coefficients"] = sources_for(dev)
    out["note"] = NOTE
    out["units"] = {
        "j_*": "J (predicted)", "*_w": "W (predicted)", "usd_*": "US dollars (predicted time x "
        "price per device-hour)", "*_tokens_per_kwh": "tokens per kWh (predicted)",
    }  # fmt: skip
    out["caption"] = describe(out, what)
    return out
