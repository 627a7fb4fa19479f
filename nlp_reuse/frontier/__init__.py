"""The speed frontier (`nlp-reuse frontier`): which student to ship under a latency budget, with the evidence."""

from nlp_reuse.frontier.measure import FrontierRow, mark_pareto, measure_frontier, within_budget
from nlp_reuse.frontier.plan import FrontierPlan, read_plan, run_plan
from nlp_reuse.frontier.tables import FRONTIER_FILES, ablation, frontier_table, write_frontier

__all__ = [
    "FRONTIER_FILES", "FrontierPlan", "FrontierRow", "ablation", "frontier_table", "mark_pareto", "measure_frontier",
    "read_plan", "run_plan", "within_budget", "write_frontier",
]
