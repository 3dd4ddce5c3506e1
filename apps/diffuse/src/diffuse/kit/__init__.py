"""The command kit: what every domain's commands share — option groups and value checks
(``options``), one error report (``errors``), path checks (``paths``), the run record
(``record``) and the wall-clock budget of ``--minutes`` (``budget``)."""

from diffuse.kit.budget import (
    SAVE_SECONDS,
    Budget,
    no_preview,
    preview_rows,
    print_result,
    process_start,
    train_config,
)
from diffuse.kit.errors import ArgumentParser, DataError, UsageError, report
from diffuse.kit.options import (
    SAMPLERS,
    add_command,
    commands,
    count_option,
    data_options,
    dimensions,
    group,
    interval,
    model_options,
    output_options,
    positive_float,
    positive_int,
    process_options,
    sampling,
    sampling_options,
    token_sampler_options,
    training_options,
)
from diffuse.kit.paths import check_input, check_model_dir, loading
from diffuse.kit.record import resolve_device, write_run

__all__ = [
    "SAVE_SECONDS",
    "SAMPLERS",
    "ArgumentParser",
    "Budget",
    "DataError",
    "UsageError",
    "add_command",
    "commands",
    "check_input",
    "check_model_dir",
    "count_option",
    "data_options",
    "dimensions",
    "interval",
    "loading",
    "group",
    "model_options",
    "no_preview",
    "output_options",
    "positive_float",
    "positive_int",
    "preview_rows",
    "print_result",
    "process_options",
    "process_start",
    "report",
    "resolve_device",
    "sampling",
    "sampling_options",
    "token_sampler_options",
    "train_config",
    "training_options",
    "write_run",
]
