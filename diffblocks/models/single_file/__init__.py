"""One model as a single original-layout file (LDM / Stability / Black Forest Labs keys) or GGUF:
the key tables, detection, reading and writing behind ``Model.from_single_file`` /
``model.save_single_file``. Whole-pipeline checkpoints (text encoders, tokenizer) build on this
in :mod:`diffblocks.single_file`.

It lives inside ``models`` because the model classes' own methods delegate here, and it builds
those classes: an import cycle kept inside one package, like ``graph``'s.
"""
