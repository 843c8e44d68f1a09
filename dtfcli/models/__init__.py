"""Pure `torch.nn` models: the DTF block, DTF-Net, DTF-Transformer and their baselines.

No file or network I/O happens here; weights are loaded and saved by `dtfcli.hub`.
"""

from dtfcli.models.aggregation import FrameAggregation, frame_aggregation
from dtfcli.models.dtf import DTFBlock
from dtfcli.models.flops import Cost, count_parameters, measure_cost, model_cost
from dtfcli.models.registry import (
    ModelSpec,
    PaperFigure,
    create_model,
    get_model_spec,
    list_models,
    model_from_config,
    register_model,
)
from dtfcli.models.resnet import DTFNet
from dtfcli.models.spectral import SpectralChannelMixing
from dtfcli.models.swin import DTFSwin
from dtfcli.models.temporal import (
    TEMPORAL_KINDS,
    DynamicTemporalConv,
    TemporalConv,
    TemporalShift,
    build_temporal_module,
)

__all__ = [
    "Cost", "DTFBlock", "DTFNet", "DTFSwin", "DynamicTemporalConv", "FrameAggregation", "ModelSpec",
    "PaperFigure", "SpectralChannelMixing", "TEMPORAL_KINDS", "TemporalConv", "TemporalShift",
    "build_temporal_module", "count_parameters", "create_model", "frame_aggregation", "get_model_spec",
    "list_models", "measure_cost", "model_cost", "model_from_config", "register_model",
]
