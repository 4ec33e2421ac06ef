"""Monitoring and sweep bookkeeping: TensorBoard extras (Lightning callback), the HPARAMS record,
each trial's result file and the sweep summary (Hydra callback)."""
