"""The GPU backend of the step layer: the decode graph on HBM GPUs (`kind: gpu` devices in
`gpu_system` servers), as a per-kernel roofline with named efficiencies and latencies.

It never imports the LPU compiler (nor the compiler it): both are backends of `lpusim.step`.
`lpusim.gpu.calibrate` and `lpusim.gpu.validate` sit above the step layer and run scenarios.
"""

from lpusim.gpu.step import (
    check_shared_memory,
    gpu_assumptions,
    gpu_step_metrics,
    minimum_gpus,
)

__all__ = ["check_shared_memory", "gpu_assumptions", "gpu_step_metrics", "minimum_gpus"]
