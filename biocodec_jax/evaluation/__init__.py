"""Downstream evaluation of a frozen codec: the shared library behind ``experiments/tasks``.

One job a module:

- :mod:`~biocodec_jax.evaluation.dataset` ``LabelledWindows``: a task's windows, labels, subjects;
- :mod:`~biocodec_jax.evaluation.splits` subject-wise splits and folds (leakage refused), low-resource subsets;
- :mod:`~biocodec_jax.evaluation.features` codes and pooled embeddings from the frozen codec, cached on disk;
- :mod:`~biocodec_jax.evaluation.linear_probe` logistic regression on frozen features;
- :mod:`~biocodec_jax.evaluation.token_model` the original's token classifier, the model (Flax NNX);
- :mod:`~biocodec_jax.evaluation.token_classifier` its training recipe and model selection (optax);
- :mod:`~biocodec_jax.evaluation.baselines` EEGNet and ShallowFBCSPNet from braindecode (optional extra);
- :mod:`~biocodec_jax.evaluation.metrics` the original's metrics (scikit-learn), unit-level aggregation;
- :mod:`~biocodec_jax.evaluation.runner` every method x split x seed x label fraction;
- :mod:`~biocodec_jax.evaluation.report` ``results.json``, ``results.md``, ``confusion_matrix.png``.

Import from the module that does the job (``from biocodec_jax.evaluation.runner import run_evaluation``);
this package imports nothing, so reading a dataset does not import JAX or torch.
"""
