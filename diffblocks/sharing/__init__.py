"""Sharing graphs as repos: folders and Hugging Face Hub repos holding ``graph.json``, a
generated model card, an optional ``modular_model_index.json`` and custom block code.

* :mod:`.repo` — save / load / push a graph repo, pinned to one commit;
* :mod:`.pipelines` — push a Pipeline (index pinned to its weights' commits), graph-only repos;
* :mod:`.card` — the generated ``README.md``;
* :mod:`.code` — the ``code`` list and the ``trust_remote_code`` check for custom blocks.

See docs/sharing.md.
"""

from ..graph.card import model_card
from ..graph.repo_code import import_graph_code
from .pipelines import graph_for_pipeline, push_pipeline
from ..graph.repo import (
    CARD_FILE,
    GRAPH_FILE,
    GraphOrigin,
    GraphRepoError,
    graph_from_pretrained,
    graph_origin,
    load_graph_file,
    push_graph,
    save_graph,
)

__all__ = [
    "CARD_FILE",
    "GRAPH_FILE",
    "GraphOrigin",
    "GraphRepoError",
    "graph_for_pipeline",
    "graph_from_pretrained",
    "graph_origin",
    "import_graph_code",
    "load_graph_file",
    "model_card",
    "push_graph",
    "push_pipeline",
    "save_graph",
]
