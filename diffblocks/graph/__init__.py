"""Graphs of blocks: building, Loop/Switch composites, validation, compiled execution with
memoisation, JSON files and pictures."""

from ..blocks.errors import GraphError, Problem
from .cache import MemoCache
from .composites import Loop, Switch
from .graph import Graph, GraphInput, UnknownBlock
from .plan import ABORT, STOP, NodeReport, Plan, RunError, RunInterrupted, RunReport, compile_graph

__all__ = [
    "Graph", "GraphInput", "UnknownBlock", "Loop", "Switch", "GraphError", "Problem",
    "MemoCache", "Plan", "compile_graph", "STOP", "ABORT", "RunError", "RunInterrupted", "RunReport", "NodeReport",
]
