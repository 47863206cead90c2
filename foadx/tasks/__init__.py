"""The workflows a user runs, each one typed call: prune to a budget or to a latency, fine-tune
from data, export (+ verify + int8 + engine), bench (+ gate), evaluate.

The CLI commands and the pipeline stages are adapters that map their options onto these
functions' option objects; every decision a workflow makes (which pruner a budget needs, the
width step's default, where a report's envelope comes from) is made here once.
"""
