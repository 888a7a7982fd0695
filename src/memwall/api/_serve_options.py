"""The policy of `memwall serve`'s three engine options, each off by default: prefix caching
(with the workload's shared prefix), prefill/decode disaggregation and speculative decoding.
`check` refuses bad values and combinations before anything is built; `build` makes what
the simulation needs once the model, device and KV cache are known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memwall.errors import MemwallError

NGRAM = "ngram"


@dataclass
class Options:
    shared_prefix: int = 0
    prefix_caching: bool = False
    disagg: tuple[int, int] | None = None
    spec_draft: str | None = None
    spec_k: int = 0
    spec_acceptance: float = 0.0
    draft_spec: Any = None  # the draft model's ModelSpec (None: n-gram or no speculation)
    sim: dict[str, Any] = field(default_factory=dict)  # simulate()'s keywords
    info: dict[str, Any] = field(default_factory=dict)  # payload keys
    notes: list[str] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return sum(self.disagg) if self.disagg else 1


def check(
    shared_prefix: Any, prefix_caching: Any, disagg: Any, spec_draft: Any, spec_k: Any,
    spec_acceptance: Any, scheduler: str, concurrency: Any, min_input: int, spec: Any,
) -> Options:  # fmt: skip
    """Every option checked (one line each), the incompatible combinations refused."""
    o = Options()
    if shared_prefix is not None:
        if isinstance(shared_prefix, bool) or not isinstance(shared_prefix, int):
            raise MemwallError(f"--shared-prefix must be a whole number of tokens, got "
                               f"{shared_prefix!r}")  # fmt: skip
        if not 0 <= shared_prefix <= min_input:
            raise MemwallError(
                f"--shared-prefix {shared_prefix} must be between 0 and the shortest prompt "
                f"({min_input:,} tokens): every prompt begins with the shared prefix"
            )
        o.shared_prefix = shared_prefix
    if not isinstance(prefix_caching, bool):
        raise MemwallError(f"prefix_caching must be True or False, got {prefix_caching!r}")
    o.prefix_caching = prefix_caching
    if disagg is not None:
        from memwall.serve.disagg import parse

        o.disagg = parse(disagg)
    if spec_draft is None:
        if spec_k is not None or spec_acceptance is not None:
            raise MemwallError("--spec-k and --spec-acceptance apply to speculative decoding: "
                               "add --spec-draft MODEL (or ngram)")  # fmt: skip
    else:
        from memwall.serve.speculative import check as check_spec

        if spec_acceptance is None:
            raise MemwallError("--spec-draft needs --spec-acceptance A (the probability a "
                               "drafted token is accepted, e.g. 0.7)")  # fmt: skip
        o.spec_k, o.spec_acceptance = check_spec(3 if spec_k is None else spec_k, spec_acceptance)
        o.spec_draft = str(spec_draft).strip()
        if o.spec_draft.lower() != NGRAM:
            o.draft_spec = _draft(o.spec_draft, spec)
        else:
            o.spec_draft = NGRAM
    used = [n for n, on in (("--prefix-caching", o.prefix_caching), ("--disagg", o.disagg),
                            ("--spec-draft", o.spec_draft)) if on]  # fmt: skip
    if scheduler == "static" and used:
        raise MemwallError(f"{used[0]} needs a continuous scheduler (vllm or prefill-first): "
                           "static batching runs padded batches to their end")  # fmt: skip
    if o.disagg:
        if scheduler != "vllm":
            raise MemwallError("--disagg runs vLLM's scheduler on every instance: use "
                               "--scheduler vllm")  # fmt: skip
        if concurrency is not None:
            raise MemwallError("--disagg simulates open-loop arrivals (--rate): drop "
                               "--concurrency")  # fmt: skip
        if o.spec_draft:
            raise MemwallError("--disagg and --spec-draft together are not modelled: use one")
    return o


def _draft(name: str, target: Any) -> Any:
    from memwall.spec import load_model_config

    d, _ = load_model_config(name)
    if not d.is_decoder or d.is_encoder_decoder:
        raise MemwallError(f"--spec-draft {name}: {d.name} is not a decoder-only model")
    if d.vocab_size != target.vocab_size:
        raise MemwallError(
            f"--spec-draft {name}: its vocabulary ({d.vocab_size:,}) differs from "
            f"{target.name}'s ({target.vocab_size:,}); a draft must share the target's tokenizer"
        )
    return d


def draft_shard(o: Options, tp: int) -> Any:
    """The draft model one tensor-parallel rank holds (vLLM runs it at the target's tp)."""
    if o.draft_spec is None:
        return None
    from memwall.serve.setup import tp_shard

    try:
        return tp_shard(o.draft_spec, tp)
    except MemwallError as e:
        raise MemwallError(f"--spec-draft {o.spec_draft} at --tp {tp}: {e}") from None


def build(
    o: Options, cfg_args: dict[str, Any], step_model: Any, kv: Any, draft: Any,
    mean_input: float,
) -> None:  # fmt: skip
    """Fill `o.sim`, `o.info` and `o.notes`. cfg_args: shard, device, device_name, precision,
    tp, predictor, launch, t_max, longest, seqs."""
    a = cfg_args
    if o.prefix_caching:
        o.sim["prefix_tokens"] = o.shared_prefix
        cacheable = o.shared_prefix // kv.block_size
        o.info["prefix_caching"] = {
            "enabled": True,
            "shared_prefix_tokens": o.shared_prefix,
            "cacheable_blocks": cacheable,
        }
        if not cacheable:
            o.notes.append(
                "prefix caching on, but the prompts share no full block (--shared-prefix "
                f"{o.shared_prefix}, blocks of {kv.block_size}): nothing to reuse"
            )
        else:
            o.notes.append(
                f"prefix caching (vLLM's automatic): the {o.shared_prefix}-token prefix every "
                "prompt "
                f"shares fills {cacheable} full blocks of {kv.block_size} tokens; a request "
                "finding them cached prefills only the rest and shares their memory; "
                "unreferenced cached blocks are evicted least recently used first"
            )
    elif o.shared_prefix:
        o.notes.append(f"prompts share their first {o.shared_prefix} tokens; prefix caching "
                       "off (--prefix-caching): every prompt is prefilled in full")  # fmt: skip
    if o.disagg:
        from memwall.memory import kv_cache_bytes
        from memwall.serve.disagg import transfer_link

        p, d = o.disagg
        per_tok = float(kv_cache_bytes(a["shard"], 1, 1, a["precision"]))
        tr = transfer_link(a["device"], a["device_name"], (p + d) * a["tp"], per_tok, a["tp"])
        o.sim["disagg"] = (p, d, tr)
        mean_t = float(tr.time([mean_input])[0])
        o.info["disaggregation"] = {
            "prefill_instances": p, "decode_instances": d, "tp": a["tp"],
            "devices": (p + d) * a["tp"], "transfer": tr.to_dict(),
            "transfer_s_at_mean_input": mean_t,
        }  # fmt: skip
        o.notes.append(
            f"disaggregated: {p} prefill + {d} decode instances x tp {a['tp']} = "
            f"{(p + d) * a['tp']} devices; TTFT ends at the prefill instance's first token; "
            f"each prompt's KV moves over {tr.link} (alpha {tr.alpha * 1e6:.3g} us; "
            f"{mean_t * 1e3:.3g} ms at the mean prompt); TPOT from the decode instances"
        )
    if o.spec_draft:
        from memwall.serve.speculative import Speculative

        dm = None
        if draft is not None:
            from memwall.serve.costmodel import build_step_model
            from memwall.serve.setup import tp_comm

            comm, _ = tp_comm(o.draft_spec, a["device_name"], a["tp"], a["precision"])
            dm = build_step_model(
                draft, a["device"], a["precision"], a["predictor"], a["launch"], a["t_max"],
                a["longest"], a["seqs"], comm, 0.0,
            )  # fmt: skip
        sp = Speculative(o.spec_k, o.spec_acceptance, dm, o.spec_draft)
        o.sim["spec"] = sp
        ctx = max(1, int(round(mean_input)))
        info = sp.to_dict(step_model, ctx, (1, 8, 64, 256))
        o.info["speculative_decoding"] = info
        su = info["speedup_at_batch"]
        what = ("n-gram (prompt lookup) proposals, no device time" if draft is None
                else f"draft {o.draft_spec} priced by memwall at batch B")  # fmt: skip
        o.notes.append(
            f"speculative decoding: {what}; k = {o.spec_k}, acceptance {o.spec_acceptance:g}: "
            f"{sp.tokens_per_step:.3g} tokens per verify step (Leviathan et al.); decode "
            f"speed-up {su['1']:.2f}x at batch 1, {su['64']:.2f}x at 64 (verify priced at "
            f"B x {o.spec_k + 1} tokens)"
        )


def t_max_extra(o: Options, seqs: int) -> int:
    """Step tokens speculation adds: k drafted tokens per decoding sequence."""
    return seqs * o.spec_k if o.spec_draft else 0


def floors(o: Options, sm: Any, i_min: int, o_min: int, bs: int) -> dict[str, float]:
    """The fastest TTFT, TPOT and E2E a request alone could see with the options on."""
    c = 0
    if o.prefix_caching and o.shared_prefix:
        c = min(o.shared_prefix, i_min - 1) // bs * bs
    q = i_min - c
    ttft = sm.step(q, 1, q * sm.keys(c + (q + 1) / 2), sm.keys(i_min))
    tpot = sm.decode_step(1, i_min)
    if "spec" in o.sim:
        tpot = min(tpot, o.sim["spec"].per_token(sm, 1, i_min)[0])
    e2e = ttft + (o_min - 1) * tpot
    if "disagg" in o.sim and o_min > 1:
        e2e += float(o.sim["disagg"][2].time([i_min])[0])
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e}


__all__ = ["Options", "build", "check", "draft_shard", "floors", "t_max_extra"]
