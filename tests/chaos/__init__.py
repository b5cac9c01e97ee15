"""The chaos run: worker replicas under repeated faults, judged by a ledger (docs/reliability.md).

``python -m tests.chaos [--short] [--seed N] [--report PATH]`` (``make chaos``, ``make chaos-short``).
Pure modules: ``plan`` (what to submit and which faults to inject, from the seed), ``submissions`` (the
submissions and emulator scripts), ``ledger`` (lost / duplicated / contradictory, exit codes, targets),
``report`` (the table and the JSON). I/O shell: ``replicas`` (supervised worker processes), ``faults``
(injecting one fault), ``reader`` (the independent consumer), ``scenario`` and ``__main__``.
"""
