"""Where trials run: Ray, the trial process and the hardware.

- `trial`: what runs inside a trial's process (its checkpoint directory, the trainable's
  context, stop polling).
- `devices`: threads, GPUs, pinning to free cores, multi-worker trials through Ray Train.
- `cluster`: starting or joining Ray, checking a cluster can hold the study.
- `remeasure`: the front's own measurements, one Ray task per front trial.
"""
