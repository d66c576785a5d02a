"""Training: the LightningModule, its CLI, checkpoints and the test table and plots."""
