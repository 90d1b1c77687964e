"""Figures for the lessons, drawn with matplotlib's object API and never with ``pyplot``.

JupyterLab runs widget callbacks on a separate kernel thread, where ``pyplot``'s global
state is not thread-safe (see ``STYLE.md``); every function here therefore builds a
:class:`matplotlib.figure.Figure` directly and returns it. It shows inline when it is the
last value of a cell, and :func:`figure_to_png` turns it into PNG bytes for widgets.

Modules: ``plots`` (segmentations and their errors, training curves, image grids),
``feature_maps`` (intermediate maps of a network), ``diagram`` (the U-Net drawn from the
model's real shapes), ``fcn_diagram`` (FCN-32s/16s/8s, likewise), ``node_grid`` (the UNet++ grid of nodes), ``receptive_field`` and
``architecture`` (the right one of these drawings for any model), ``slice_viewer`` (an ipywidgets viewer for 3D volumes that draws PNG frames without pyplot).
"""

from .architecture import draw_architecture
from .diagram import draw_unet, meta_copy, unet_diagram_data
from .fcn_diagram import draw_fcn, fcn_diagram_data
from .node_grid import draw_node_grid, node_grid_data
from .feature_maps import feature_maps, plot_feature_maps, top_variance_channels
from .plots import error_map, figure_to_png, plot_differences, plot_history, show_images, show_segmentation
from .slice_viewer import SliceViewer

__all__ = [
    "draw_architecture",
    "draw_fcn",
    "draw_node_grid",
    "draw_unet",
    "error_map",
    "fcn_diagram_data",
    "feature_maps",
    "figure_to_png",
    "meta_copy",
    "node_grid_data",
    "plot_differences",
    "plot_feature_maps",
    "plot_history",
    "show_images",
    "show_segmentation",
    "SliceViewer",
    "top_variance_channels",
    "unet_diagram_data",
]
from .receptive_field import *  # noqa: F401,F403
