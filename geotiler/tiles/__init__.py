"""The tile stage: scenes and masks into a Zarr tile store, and reading it back.

Modules by role: :mod:`~geotiler.tiles.scenes` (the scene model and its resolver),
:mod:`~geotiler.tiles.classes` (class tables), :mod:`~geotiler.tiles.masks` (masks on their
scene's grid), :mod:`~geotiler.tiles.plan` (what will be cut), :mod:`~geotiler.tiles.layout`,
:mod:`~geotiler.tiles.read` and :mod:`~geotiler.tiles.cut` (the hot path),
:mod:`~geotiler.tiles.writer`, :mod:`~geotiler.tiles.store` and :mod:`~geotiler.tiles.schema`
(the store), :mod:`~geotiler.tiles.filters`, :mod:`~geotiler.tiles.splits`,
:mod:`~geotiler.tiles.balance` and :mod:`~geotiler.tiles.decisions` (decisions over the index),
and :mod:`~geotiler.tiles.run` (the stage).
"""
