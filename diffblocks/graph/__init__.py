"""Graphs of blocks: building, Loop/Switch composites, validation, compiled execution with
memoisation, JSON files and pictures."""

from diffblocks.blocks.errors import GraphError, Problem
from diffblocks.graph.cache import MemoCache
from diffblocks.graph.composites import Loop, Switch
from diffblocks.graph.graph import Graph, GraphInput, UnknownBlock
from diffblocks.graph.plan import ABORT, STOP, NodeReport, Plan, RunError, RunInterrupted, RunReport, compile_graph

__all__ = [
    "Graph", "GraphInput", "UnknownBlock", "Loop", "Switch", "GraphError", "Problem",
    "MemoCache", "Plan", "compile_graph", "STOP", "ABORT", "RunError", "RunInterrupted", "RunReport", "NodeReport",
]
