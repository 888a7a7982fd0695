"""`memwall.api.parallel`: a model split over N devices: per-device memory and work, every
collective, step time, MFU; or every layout that fits, ranked. `memwall parallel` parses its
flags, calls this and renders the `Result`.

Flags that do not apply are refused, never ignored: what `--search` chooses itself, and what
only training has. A keyword left as None is "not given" (the CLI passes None for a flag the
user did not type), so `zero=0` with `search=True` is refused as `--zero 0` is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memwall.api._common import choice, config_model, not_applicable, plain, si
from memwall.api._result import Result
from memwall.errors import MemwallError

MODES = ("train", "infer")
CHECKPOINTING = ("none", "selective", "full")
ALGORITHMS = ("auto", "ring", "tree")
# Flags that --search sets itself, and flags of training alone (refused when given), in the
# command's order (the order the refusal names them).
SEARCHED = (
    "tp", "cp", "pp", "dp", "ep", "zero", "sequence_parallel", "interleave", "checkpointing",
)  # fmt: skip
TRAIN_ONLY = ("cp", "zero", "checkpointing", "no_overlap", "tp_overlap", "kernel_rate")
INTRA = ("switch", "ring")


def parallel(
    model: str,
    *,
    mode: str = "train",
    device: str = "h100-sxm",
    devices: int = 8,
    tp: int | None = None,
    cp: int | None = None,
    pp: int | None = None,
    dp: int | None = None,
    ep: int | None = None,
    zero: int | None = None,
    sequence_parallel: bool | None = None,
    interleave: int | None = None,
    checkpointing: str | None = None,
    batch: int | None = None,
    micro_batch: int | None = None,
    seq_len: int | None = None,
    precision: str = "bf16",
    search: bool = False,
    no_overlap: bool | None = None,
    tp_overlap: bool | None = None,
    kernel_rate: float | None = None,
    algorithm: str = "auto",
    roofline: bool = False,
    node_size: int | None = None,
    intra: str | None = None,
    attention: str | None = None,
    price_per_hour: float | None = None,
    plot: str | Path | None = None,
) -> Result:
    """Split MODEL over N devices: per-device memory and work, every collective (alpha-beta
    model over the catalog's links), step time and MFU, all predicted; with `search`, every
    layout that fits, fastest first. Train: one iteration; infer: prefill + decode.

    Args:
        model: a preset name (gpt2, llama-3-8b, ...) or an HF config.json.
        mode: train (one iteration; default) or infer (prefill + decode).
        device: catalog device, or local (measured); default h100-sxm. What-ifs:
            `h100-sxm@nvlink=2` (the scale-up link inside a node x2), `@net=0.5` (the
            scale-out network x0.5), `@link=2` (both), `@clock=0.8` (compute peaks x0.8),
            `@power=500` (a 500 W cap: clock from data/power_scaling.json).
        devices: devices in all (N); default 8.
        tp: tensor-parallel degree (default 1; None: not given).
        cp: context-parallel degree, ranks each sequence is split over (ring attention;
            train; devices = tp x cp x pp x dp; default 1; None: not given).
        pp: pipeline stages (default 1; None: not given).
        dp: data-parallel degree (default N / (tp x pp); None: not given).
        ep: expert-parallel degree (MoE; divides dp; default 1; None: not given).
        zero: ZeRO stage 0-3 over data parallelism (train; default 0; None: not given).
        sequence_parallel: Megatron sequence parallelism (default False; None: not given).
        interleave: virtual stages per device (1F1B; default 1; None: not given).
        checkpointing: activation recomputation: none, selective or full (train; default
            none; None: not given).
        batch: global batch in sequences (default 8 x N train, 8 infer).
        micro_batch: micro-batch per replica (default 1 train, batch / dp infer; refused by
            an inference search, which runs batch / dp per replica).
        seq_len: tokens per sequence (infer: prompt / context); default 2048, or what the
            model's learned positions allow.
        precision: bf16 (default), fp16, fp32, ...; fp8 (train): Transformer Engine mixed
            FP8 (Linear GEMMs at the FP8 peak, the rest bf16).
        search: rank every layout that fits by step time (the degrees, ZeRO, checkpointing,
            interleaving and sequence parallelism are then chosen, and refused when given).
        no_overlap: do not hide gradient sync behind backward (train; default False; None:
            not given).
        tp_overlap: overlap tensor-parallel communication with the GEMMs beside it, as
            Megatron's --tp-comm-overlap and NeMo's tp_comm_overlap do (Transformer Engine
            userbuffers): each pass's all-gathers and reduce-scatters hide behind its matmuls,
            slowing them by the overlap rate of data/efficiency.json (train; default False: the
            collectives are exposed; None: not given).
        kernel_rate: the rate, a fraction in (0, 1.5], at which a whole training step's
            kernels run against the same kernels priced one by one (train, realistic model;
            default None: the value fitted on published runs, data/efficiency.json
            training_step, on datacenter GPUs): set it to what your own stack sustains.
        algorithm: collective algorithm: auto (default), ring or tree.
        roofline: price with the plain roofline instead (every kernel at the dense peak and
            datasheet bandwidth, links at line rate, no work outside the op table): an upper
            bound on speed, labelled so. Default False: the realistic prediction (published
            kernel efficiencies by GEMM shape, NCCL bus bandwidth, attention backward, loss,
            gradient accumulation and clipping), with its range.
        node_size: devices per node joined by the scale-up link (default: the catalog's).
        intra: switch (default: every pair at full bandwidth) or ring (point-to-point links
            in a full mesh, no switch: ring collectives at one link's bandwidth, the scale-up
            bandwidth / (node size - 1); all-to-alls over every link).
        attention: the attention kernel family of data/efficiency.json: auto (default; in
            training the kernel the frameworks run on the device: cuDNN on Hopper,
            FlashAttention-2 on Ampere, the class default elsewhere; in inference the class
            default), cudnn, fa3, fa2, triton (the 2022-23 Triton FlashAttention) or torch
            (unfused); refused with `roofline`, which prices attention at the dense peak.
        price_per_hour: US dollars per device-hour: adds the predicted cost per million
            tokens to the energy block (joules per token, average power), which every plan
            carries (inference: per output token of the decode step, per prompt token of the
            prefill; training: per trained token).
        plot: write the figure (.png, .svg, .pdf) to this path: the step part by part, one bar
            per layout (the fastest eight of a search), the MFU and any published run beside;
            a bad path is refused before any work, and the path is named in the payload.

    Returns a `Result`: `.to_dict()` is `memwall parallel ... --format json`, `.to_frame()`
    the collectives per step (the CSV), `extra["result"]` the plan (and search) objects.
    Bad input and flags that do not apply raise `MemwallError` (the CLI's one line).

    Example:
        >>> memwall.api.parallel("llama-3-70b", mode="infer", devices=8, tp=8)["step_time"]
    """
    from memwall.api._energy import needs_device, parallel_energy
    from memwall.parallel.api import parallel_analysis

    model = config_model(model, "parallel")
    needs_device(price_per_hour, device)
    if plot is not None:
        from memwall.plots.save import check_plot_path

        plot = check_plot_path(plot)  # a bad path is refused before any work
    mode = choice("--mode", mode, MODES)
    algorithm = choice("--algorithm", algorithm, ALGORITHMS)
    if checkpointing is not None:
        checkpointing = choice("--checkpointing", checkpointing, CHECKPOINTING)
    if intra is not None:
        intra = choice("--intra", intra, INTRA)
    if attention is not None:
        from memwall.predict.efficiency import attention_names

        attention = choice("--attention", str(attention).strip().lower(), attention_names())
    if kernel_rate is not None and not 0.0 < kernel_rate <= 1.5:
        raise MemwallError(f"--kernel-rate must be a fraction in (0, 1.5], not {kernel_rate}")
    values = locals()

    def given(names: tuple[str, ...]) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if values[n] is not None]

    if roofline:
        not_applicable(given(("attention", "kernel_rate")), "--roofline prices every kernel "
                       "at the dense peak")  # fmt: skip
    if search:
        not_applicable(given(SEARCHED), "--search chooses the layout (degrees, ZeRO, "
                       "checkpointing, interleaving, sequence parallelism) itself")  # fmt: skip
    if mode == "infer":
        not_applicable(given(TRAIN_ONLY), "for --mode train only; inference has no backward "
                       "pass, gradients or optimizer state")  # fmt: skip
        if search:
            not_applicable(given(("micro_batch",)), "an inference --search runs batch / dp per "
                           "replica")  # fmt: skip
    r = parallel_analysis(
        model, mode, device, devices, tp, pp, dp, 1 if ep is None else ep,
        0 if zero is None else zero, bool(sequence_parallel),
        1 if interleave is None else interleave, checkpointing or "none", batch, micro_batch,
        seq_len, precision, search, not no_overlap, algorithm, not roofline,
        cp=1 if cp is None else cp, node_size=node_size, intra=intra,
        attention=attention or "auto", tp_overlap=bool(tp_overlap), kernel_rate=kernel_rate,
    )  # fmt: skip
    d = r.to_dict()
    from memwall.hardware import get_device
    from memwall.spec import load_model

    spec = load_model(model)
    d["energy"] = parallel_energy(spec, get_device(device), r.plan, price_per_hour)
    if spec.is_moe:  # step times read the experts each step's tokens touch
        from memwall.count import MOE_ROUTING

        d["moe_routing"] = MOE_ROUTING
    if mode == "train" and spec.is_moe:
        d["moe_training"] = MOE_TRAINING
    if mode == "train":  # published measurements of this architecture, device and precision
        from memwall.parallel.beside import training_beside

        d["published"] = training_beside(spec, device, d["precision"], r.plan.devices)
    else:  # real engines' runs of this model, device and precision at this tensor parallelism
        from memwall.parallel.beside import inference_beside

        d["published"] = inference_beside(model, device, d["precision"], tp=r.plan.layout.tp)
    payload = plain(d)
    if plot is not None:
        from memwall.plots.parallel import plot_step

        payload["plot"] = str(plot_step(payload, plot))
    rows = payload["collectives"]
    notes = [_summary(payload)] + ([f"note: {d['moe_routing']}"] if "moe_routing" in d else [])
    notes += [f"caution: {d['moe_training']}"] if "moe_training" in d else []
    if payload.get("published"):
        from memwall.parallel.beside import inference_line, training_line

        line = training_line if mode == "train" else inference_line
        notes.append(line(payload["published"]))
    notes.append(payload["energy"]["caption"])
    return Result(
        command="parallel",
        payload=payload,
        rows=rows,
        columns=list(rows[0]) if rows else None,
        title=_title(payload),
        notes=notes,
        extra={"result": r},
    )


MOE_TRAINING = (
    "mixture-of-experts training is priced optimistic: every published MoE training run in "
    "data/published_training.csv (NeMo 25.11: GPT-OSS-120B, Qwen3-30B-A3B, DeepSeek-V3) ran "
    "slower than memwall predicts (the fine-grained ones predicted 26-262% too fast); memwall "
    "has no term yet for the host and dispatch time they spend outside the expert GEMMs "
    "(benchmarks/bench_parallel.py prints each)"
)


def _title(d: dict[str, Any]) -> str:
    """The line above the tables: the model, the layout and the workload."""
    return (
        f"{d['model']} {d['mode']} on {d['devices']} x {d['device']}, {d['layout']['label']}, "
        f"batch {d['batch']} (micro-batch {d['micro_batch']}, {d['micro_batches']} per replica), "
        f"seq {d['seq_len']}, {d['precision']}"
    )


def _summary(d: dict[str, Any]) -> str:
    """Throughput and MFU with its range and what priced it, what limits the step, and (train)
    where exposed communication overtakes compute."""
    rng = d.get("mfu_range")
    span = f" (range {100 * rng[0]:.0f}-{100 * rng[1]:.0f}%)" if rng else ""
    out = (
        f"tokens/s {si(d['tokens_per_s'])}; MFU {100 * d['mfu']:.1f}%{span} of the dense peak "
        f"{si(d['peak_flops'], 'FLOP/s')} per device, predicted by {d['compute_model']}"
    )
    if d.get("limits"):
        out += f"; limited by {d['limits']}"
    att = d.get("attention") or {}
    if att.get("note") and d.get("compute_model", "").startswith("memwall's realistic"):
        out += f"; {att['note']}"
    if d["mode"] == "train":
        cross = d["communication_exceeds_compute_at"]
        out += (
            f"; exposed communication exceeds compute from {cross} devices (more data "
            "parallelism, same batch)"
            if cross
            else "; exposed communication stays under compute at every device count the batch "
            "allows (more data parallelism, same batch)"
        )
    return out
