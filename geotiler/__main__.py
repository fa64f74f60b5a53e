"""``python -m geotiler`` (also how ``torchrun -m geotiler train`` starts)."""

from geotiler.cli import main

main()
