"""The tiny-shapes model's training and evaluation helpers (not part of the diffblocks package).

The dataset of coloured shapes and its captions, the checker that reads a generated image back,
the evaluation over held-out prompts, the tokenizer built in code, the training targets, and
the small helpers the training script (`examples/train_tiny_shapes.py`) uses. Sampling goes
through the SD 1.5 preset graph (`tiny_shapes.sampler.generate`), the path `diffblocks run` takes.

`examples/` is put on `sys.path` by the training script (it runs from there) and by
`tests/shapes/conftest.py`; nothing in `diffblocks` imports this package.
"""
