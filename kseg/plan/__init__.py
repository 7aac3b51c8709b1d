"""Experiment planning for a CPU budget (``kseg plan``): data fingerprint, speed probe, a config.

- :mod:`~kseg.plan.fingerprint`: sizes, channels, intensity, foreground, objects, groups.
- :mod:`~kseg.plan.planner`: probe this machine, fit the recipe to the budget, write YAML.

Example:
    >>> from kseg.plan import plan, to_yaml
    >>> p = plan("data/hc18", budget_minutes=15)
    >>> print(to_yaml(p))
"""

from kseg.plan.fingerprint import fingerprint
from kseg.plan.planner import Plan, Probe, plan, to_yaml

__all__ = ["Plan", "Probe", "fingerprint", "plan", "to_yaml"]
