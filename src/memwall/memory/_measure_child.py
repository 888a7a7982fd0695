"""Child process of `memwall.memory.measured`: trains small models on the CPU and reports peak RSS.

Reads a JSON list of runs on stdin, writes one JSON object per run on stdout. Run by the parent
with glibc's mmap threshold pinned (MALLOC_MMAP_THRESHOLD_) so every tensor of 64 KiB or more is
its own mapping, returned to the system when freed: resident memory then follows live tensors.

Only memory that is not file-backed is counted (RssAnon + RssShmem). File-backed resident pages
are library code mapped in the first time a code path runs (gradient checkpointing, an optimizer):
how much a first touch maps depends on the page cache, not on the run. On Linux >= 6.x with large
folios (ext4, xfs) a freshly written file -- a new venv's libtorch_cpu.so -- sits in the cache in
folios of up to MBs, and a fault maps the whole folio: touching checkpointing's code then adds
~12 MB to RSS in a fresh venv and ~2.5 MB in an older one. So every code path is warmed up before
the baseline, and the file-backed pages that still appear are taken out of the high-water mark.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import time

from memwall.families import family_for_config

_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem")


def _status() -> dict[str, int]:
    """Resident sizes in bytes; `mem` is what is not file-backed (tensors, Python objects)."""
    with open("/proc/self/status") as f:
        text = f.read()
    st = {k: int(re.search(k + r":\s+(\d+)", text).group(1)) * 1024 for k in _FIELDS}
    st["mem"] = st["RssAnon"] + st["RssShmem"]
    return st


def _hwm_mem() -> int:
    """High-water mark of non-file-backed memory since the last reset, from below: VmHWM counts
    file-backed pages too; those only grow (nothing reclaims them here), so subtracting the ones
    resident now removes at least as many as were resident at the mark."""
    st = _status()
    return st["VmHWM"] - st["RssFile"]


def _reset_peak() -> bool:
    """Reset the kernel's resident high-water mark (Linux >= 4.0): `5` to /proc/self/clear_refs."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build_model(run: dict):
    """The HF model of `run` (random weights, dropout as asked), its inputs and labels."""
    import torch

    from memwall.sources import install_torchvision_fallback

    install_torchvision_fallback()  # a mismatched torchvision must not break transformers
    import transformers

    cfg_dict = dict(run["config"])
    keys = family_for_config(cfg_dict).dropout_keys  # every dropout the family has
    mtype = cfg_dict.pop("model_type")
    p = run.get("dropout", 0.0)
    for key in keys:  # ... all at one probability
        cfg_dict[key] = p
    cfg = transformers.CONFIG_MAPPING[mtype](**cfg_dict)
    cfg.use_cache = False
    cfg._attn_implementation = run.get("attn", "sdpa")
    if mtype == "bert":
        cfg.num_labels = 2
        model = transformers.AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    dtype = getattr(torch, run.get("dtype", "float32"))
    model = model.to(dtype)
    model.train()
    if run.get("checkpointing"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg.vocab_size, (run["batch"], run["seq_len"]), generator=g)
    if mtype == "bert":
        labels = torch.zeros(run["batch"], dtype=torch.long)
    else:
        labels = ids
    return model, ids, labels


def _optimizer(model, name: str):
    import torch

    params = model.parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, foreach=False)
    if name == "momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, foreach=False)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-4, foreach=False)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, foreach=False)
    raise ValueError(f"optimizer {name} is not measured")


def run_one(run: dict) -> dict:
    gc.collect()
    base0 = _status()
    base = base0["mem"]
    model, ids, labels = build_model(run)
    opt = _optimizer(model, run["optimizer"])
    gc.collect()
    built = _status()["mem"]
    reset_ok = _reset_peak()
    times = []
    peak = 0
    fb_peak = fb_base = None
    for step in range(max(2, run.get("steps", 2))):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if step == 1 and reset_ok:
            # steady state: weights and optimizer state only; forward + backward on top of them
            peak = max(peak, _hwm_mem())
            fb_base = _status()["mem"]
            _reset_peak()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        if step == 1 and reset_ok:
            fb_peak = _hwm_mem()
        opt.step()
        times.append(time.perf_counter() - t0)
        del loss
    end = _status()
    states = end["mem"]
    peak = max(peak, _hwm_mem())
    n_params = sum(p.numel() for p in model.parameters())
    del model, opt, ids, labels
    gc.collect()
    return {
        "baseline_rss": base0["VmRSS"],
        "weights": built - base,
        "states": states - base,
        "peak": peak - base,
        "peak_reset": reset_ok,
        "fb_peak": None if fb_peak is None else fb_peak - fb_base,  # forward + backward, step 2
        "file_growth": end["RssFile"] - base0["RssFile"],  # library code first mapped by this run
        "step_seconds": times,
        "n_params": n_params,
    }


def _shape_key(run: dict) -> str:
    """What sets the tensor shapes of a step (not the optimizer or checkpointing)."""
    keys = ("config", "batch", "seq_len", "dtype", "attn", "dropout")
    return json.dumps({k: run.get(k) for k in keys}, sort_keys=True)


def _warm_up(runs: list[dict]) -> None:
    """Before anything is measured, put in every baseline what a first run leaves behind:
    - one tiny run of every distinct code path (family, optimizer, checkpointing, attention,
      dropout, dtype): the libraries they load and the code they first touch;
    - one full-size run of every distinct shape: the first step at a new shape leaves memory
      behind that outlives the model (state the CPU kernels keep per shape): with torch 2.13,
      ~8 MB for the small GPT-2 at 4 x 256 and ~2 MB for the small BERT, which the first
      measured run at that shape counted as its own model state (the baseline of the runs after
      it grew by as much)."""
    seen = set()
    for run in runs:
        tiny = dict(run, batch=1, seq_len=8)
        key = json.dumps(tiny, sort_keys=True)
        if key not in seen:
            seen.add(key)
            run_one(tiny)
    shapes = set()
    for run in runs:
        if _shape_key(run) not in shapes:
            shapes.add(_shape_key(run))
            run_one(dict(run, steps=1))


def main() -> None:
    import torch

    runs = json.loads(sys.stdin.read())
    torch.set_num_threads(int(runs[0].get("threads", 1)) if runs else 1)
    if runs and runs[0].get("warmup", True):
        _warm_up(runs)
    for run in runs:
        res = run_one(run)
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
