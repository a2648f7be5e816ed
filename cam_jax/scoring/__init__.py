"""Scoring heat maps over whole data sets: the streaming driver (``driver``: ``cam_jax.score``,
``random_baseline``) and whole experiments built on it, model-parameter randomisation
(``sanity``) and map agreement between models (``agreement``)."""
