"""Differential privacy: DP-SGD on the training loop (``dpsgd``, Opacus), the preprocessing
statistics of private rows (``preprocess``, OpenDP) and what a trained model leaks (``audit``).
The ``privacy`` config section (``fitwell.config.privacy``) turns it on; one budget covers the
preprocessing and the training."""
