"""Small HF configs that tests build and run for real (seconds, not minutes): one place for them.

Imported as `from tiny_configs import ...`: pytest puts tests/ on `sys.path` (it holds the
root conftest.py and no __init__.py), for tests/cli/ too. The dicts are shared: copy one
(`{**GPT2_2, ...}`) before changing it.
"""

from __future__ import annotations

# Real widths, two layers: what the profile tests measure.
BERT2 = {
    "model_type": "bert",
    "hidden_size": 768,
    "num_hidden_layers": 2,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "vocab_size": 30522,
    "hidden_act": "gelu",
}
GPT2_2 = {
    "model_type": "gpt2",
    "n_embd": 768,
    "n_layer": 2,
    "n_head": 12,
    "n_positions": 1024,
    "vocab_size": 50257,
    "activation_function": "gelu_new",
}

# Narrow models of each kind the profiler maps (grouped-query attention, OPT, experts).
LLAMA_TINY = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "vocab_size": 512,
}
OPT_TINY = {
    "model_type": "opt",
    "hidden_size": 128,
    "ffn_dim": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "vocab_size": 512,
    "word_embed_proj_dim": 128,
}
MIXTRAL_TINY = {
    **LLAMA_TINY,
    "model_type": "mixtral",
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
}

# Stand-ins for the paper's case-study models (same names, same families), width 64-96.
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
    "vocab_size": 256,
}
TINY_BERT_LARGE = {**TINY_BERT, "hidden_size": 96, "intermediate_size": 192}
TINY_GPT2 = {
    "model_type": "gpt2",
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
    "vocab_size": 256,
}
# The report's stand-ins for the case study.
REPORT_MODELS = {"bert-base": TINY_BERT, "bert-large": TINY_BERT_LARGE, "gpt2": TINY_GPT2}
# The case study's: a deeper bert-large, and a gpt2 whose 16 positions must be extended to
# generate 32 tokens (tests/test_casestudy.py checks the note that says so).
CASESTUDY_MODELS = {
    "bert-base": TINY_BERT,
    "bert-large": {**TINY_BERT_LARGE, "num_hidden_layers": 3},
    "gpt2": {**TINY_GPT2, "n_positions": 16},
}
