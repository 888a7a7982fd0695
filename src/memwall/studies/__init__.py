"""Studies: a measurement of this machine set beside memwall's predictions.

- `memwall.studies.profile`: one model and workload, timed, profiled per op and predicted;
- `memwall.studies.casestudy`: the paper's Figure 3 on this machine (plan, measure, assemble).

Both need torch and transformers; import the submodule you need (this package imports neither).
"""
