"""What a run leaves behind for comparing runs: its settings beside its final metrics
(TensorBoard HPARAMS), each trial's result file, and a sweep's summary table."""
