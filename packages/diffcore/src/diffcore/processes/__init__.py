"""Forward corruption processes and their training losses: Gaussian noise, masking, degradation."""

from diffcore.processes.crappify import (
    CRAPPIFIERS,
    compose,
    identity,
    jpeg,
    lowpass,
    parse_crappifier,
    start_stats,
    stripes,
)
from diffcore.processes.degradation import (
    Degradation,
    DegradationProcess,
    Restorer,
    blur,
    downsample,
    pixelate,
)
from diffcore.processes.gaussian import (
    PROCESSES,
    GaussianProcess,
    flow_matching,
    named_schedule,
    process_fields,
    time_limits,
)
from diffcore.processes.mask import (
    MaskProcess,
    block_attention_mask,
    clean_log_probs,
    cosine_mask_grid,
    linear_mask_grid,
)
from diffcore.processes.substitution import (
    SubstitutionProcess,
    blosum_replacement,
    uniform_replacement,
)

__all__ = [
    "CRAPPIFIERS",
    "PROCESSES",
    "Degradation",
    "DegradationProcess",
    "GaussianProcess",
    "MaskProcess",
    "Restorer",
    "SubstitutionProcess",
    "block_attention_mask",
    "blosum_replacement",
    "blur",
    "clean_log_probs",
    "compose",
    "cosine_mask_grid",
    "downsample",
    "flow_matching",
    "identity",
    "jpeg",
    "linear_mask_grid",
    "lowpass",
    "named_schedule",
    "parse_crappifier",
    "pixelate",
    "process_fields",
    "start_stats",
    "stripes",
    "time_limits",
    "uniform_replacement",
]
