"""One model as a single original-layout file (LDM / Stability / Black Forest Labs keys) or GGUF:
the key tables, detection, reading and writing behind ``Model.from_single_file`` /
``model.save_single_file``. Whole-pipeline checkpoints (text encoders, tokenizer) build on this
in :mod:`diffblocks.single_file`.

It lives inside ``models`` because the model classes' own methods delegate here. It builds
those classes without importing them: the class (or model) comes in as an argument and the
model modules are named only under ``TYPE_CHECKING``, so ``modeling`` -> ``single_file`` is a
one-way edge. Building on ``meta`` comes from :mod:`diffblocks.models.loading`.
"""
