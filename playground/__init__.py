"""The shared layer: device choice, seeding, TensorBoard logging, run directories,
checkpoints and progress bars. It imports nothing from `agents`, `envs` or `gan`."""
