"""unet-lessons: the tested helper package behind the U-Net teaching notebooks.

Modules: ``blocks`` (conv/norm/act factories and stages), ``models`` (one file per
architecture, ``MODELS`` and ``build_model``), ``losses``, ``metrics``, ``data``
(synthetic generators, the ISBI 2012 loader and downloader, augmentation), ``train``
(``TrainConfig``, ``fit``, ``evaluate``), ``viz`` (plots, feature maps, receptive
fields, architecture diagrams) and ``utils``.
"""

__version__ = "0.1.0"
