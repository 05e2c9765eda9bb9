"""The PR gate: base against head on the perf fast checks, with verdicts that tell the truth.

``cli`` is the command, ``run`` drives the interleaved pytest rounds, ``stats`` turns rounds into
verdicts, ``report`` writes the Markdown, ``calibrate`` measures the gate's own error rates.
"""
