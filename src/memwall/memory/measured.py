"""Measured peak memory of real training steps on this CPU, beside memwall's prediction.

How it measures (and why): each batch of runs goes to a fresh Python subprocess that builds the
model with transformers from a config dict (random weights, no download) and runs two steps of
zero_grad -> forward -> backward -> optimizer.step. The peak is the kernel's resident-set
high-water mark (VmHWM, reset through /proc/self/clear_refs after the model is built), less the
file-backed pages resident when it is read, minus the non-file-backed resident size before the
model was built; so weights, gradients, optimizer state, activations and temporaries are all in
it, and the runtime (Python, torch, the libraries' code) is not. The second step's
forward + backward is also measured on its own (`fb_peak`: its high-water mark above the size
just before it, when only weights and optimizer state are resident): what activations, their
temporaries and the gradients add, whatever the optimizer step does.

RSS rather than an allocator hook or the profiler's memory events: it is what the operating
system charges, whatever allocates it (oneDNN scratch, autograd bookkeeping), and it needs no
instrumentation that changes what is measured. Its noise is tamed in the child: glibc's mmap
threshold is pinned at 64 KiB (MALLOC_MMAP_THRESHOLD_), so every tensor of that size or more is
its own mapping and goes back to the system when freed (no heap high-water mark hiding frees),
one malloc arena, one thread (no per-thread buffers), and a tiny warm-up run of every distinct
configuration first so lazily loaded libraries are in the baseline. File-backed pages (library
code) are left out altogether: how many a first call into a code path maps depends on the page
cache, not on the run -- in a freshly installed venv on a kernel with large page-cache folios, the
first gradient-checkpointed step maps ~12 MB of libtorch_cpu.so, against ~2.5 MB in an older one.
Sizes are chosen so the peak is tens to hundreds of MB, far above the remaining noise (about 1 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from memwall.errors import MemwallError
from memwall.memory.training import TrainingFootprint, training_memory
from memwall.spec import ModelSpec, parse_precision, spec_from_config

CHILD_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "65536",
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_TRIM_THRESHOLD_": "65536",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_OFFLINE": "1",
}


@dataclass(frozen=True)
class Run:
    """One measured configuration: an HF config dict (with model_type) and the training setup."""

    name: str
    config: dict
    batch: int
    seq_len: int
    optimizer: str = "adam"
    checkpointing: bool = False
    attn: str = "sdpa"  # transformers attention implementation: sdpa (fused) or eager
    dropout: float = 0.0  # hidden and attention dropout, set in the config by the caller

    def spec(self) -> ModelSpec:
        return spec_from_config(self.config, name=self.name)

    def predict(self, **kw: Any) -> TrainingFootprint:
        """memwall's prediction for this run: fp32 eager PyTorch on the CPU (per-tensor optimizer
        step, dropout masks in fp32; SDPA with dropout runs its unfused math path on the CPU)."""
        return training_memory(
            self.spec(),
            batch=self.batch,
            seq_len=self.seq_len,
            precision=parse_precision("fp32"),
            optimizer=self.optimizer,
            checkpointing="full" if self.checkpointing else "none",
            impl="eager",
            fused_attention=self.attn == "sdpa" and self.dropout == 0,
            dropout=self.dropout,
            mask_bytes=4.0,
            foreach=False,
            **kw,
        )

    def child_args(self) -> dict:
        return {
            "config": self.config,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "optimizer": self.optimizer,
            "checkpointing": self.checkpointing,
            "attn": self.attn,
            "dropout": self.dropout,
        }


def _child(payload: list[dict], timeout: float) -> list[dict]:
    env = dict(os.environ, **CHILD_ENV)
    proc = subprocess.run(
        [sys.executable, "-m", "memwall.memory._measure_child"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"measurement child failed ({proc.returncode}): {tail[0]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if len(lines) != len(payload):
        raise RuntimeError(f"measurement child returned {len(lines)} results for {len(payload)}")
    return [json.loads(ln) for ln in lines]


def measure(runs: list[Run], timeout: float = 900.0, threads: int = 1) -> list[dict]:
    """Measure the runs in one fresh subprocess; one result dict per run, in order.

    Where the kernel cannot reset the high-water mark (/proc/self/clear_refs), each run gets its
    own subprocess instead, without warm-up, so the mark covers that run alone."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise MemwallError(
            f"measuring needs torch and transformers ({e.name} is missing): "
            "pip install 'memory-wall[torch]'"
        ) from None
    if not os.path.exists("/proc/self/status"):
        raise MemwallError("measuring peak memory reads /proc/self/status: Linux only")
    payload = [dict(r.child_args(), threads=threads) for r in runs]
    results = _child(payload, timeout)
    if all(r["peak_reset"] for r in results):
        return results
    return [_child([dict(p, warmup=False)], timeout)[0] for p in payload]


def measure_saved(run: Run, dtype: str = "float32") -> float:
    """Bytes autograd keeps for backward after one forward of `run`, in this process: every
    tensor handed to `torch.autograd.graph.saved_tensors_hooks`, counted once per storage,
    parameters excluded. Exact (no allocator noise); what `activations` predicts."""
    import torch

    from memwall.memory._measure_child import build_model

    torch.manual_seed(0)
    model, ids, labels = build_model(dict(run.child_args(), dtype=dtype))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(input_ids=ids, labels=labels).loss
    del loss
    return float(sum(seen.values()))


def compare(runs: list[Run], results: list[dict]) -> list[dict]:
    """Measured vs predicted, one row per run (bytes; error = predicted / measured - 1)."""
    rows = []
    for run, res in zip(runs, results, strict=True):
        fp = run.predict()
        rows.append(
            {
                "run": run.name,
                "optimizer": run.optimizer,
                "checkpointing": "full" if run.checkpointing else "none",
                "attention": run.attn,
                "measured_peak": res["peak"],
                "predicted_peak": fp.peak,
                "error": fp.peak / res["peak"] - 1,
                "measured_states": res["states"],
                "predicted_states": fp.model_states,
                "measured_activation_peak": res["peak"] - res["states"],
                "predicted_activation_peak": fp.peak - fp.model_states,
                "measured_fb_peak": res.get("fb_peak"),
                "predicted_fb_peak": fp.fb_peak,
                "peak_event": fp.peak_event,
                "n_params": res["n_params"],
                "predicted_n_params": fp.n_params,
                "step_seconds": min(res["step_seconds"]),
            }
        )
    return rows


def bert_config(layers: int = 4, hidden: int = 256, heads: int = 4, vocab: int = 2000) -> dict:
    """A small BERT (random weights), dropout off so runs are deterministic."""
    return {
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def gpt2_config(layers: int = 4, hidden: int = 256, heads: int = 4, vocab: int = 8000) -> dict:
    """A small GPT-2 (random weights, GPT-2's own gelu_new), dropout off."""
    return {
        "model_type": "gpt2",
        "n_embd": hidden,
        "n_layer": layers,
        "n_head": heads,
        "vocab_size": vocab,
        "n_positions": 1024,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }


def llama_config(
    layers: int = 4, hidden: int = 256, heads: int = 8, kv_heads: int = 2, vocab: int = 4000
) -> dict:
    """A small Llama (gated SiLU MLP, RMSNorm, rotary, grouped-query attention)."""
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": 3 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": 1024,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 0,
        "eos_token_id": 0,
    }


def opt_config(layers: int = 4, hidden: int = 256, heads: int = 4, vocab: int = 4000) -> dict:
    """A small OPT (ReLU MLP, pre-norm, learned positions)."""
    return {
        "model_type": "opt",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "ffn_dim": 4 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": 1024,
        "word_embed_proj_dim": hidden,
        "activation_function": "relu",
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
    }
