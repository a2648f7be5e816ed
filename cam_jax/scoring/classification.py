"""Host-side (numpy) binary classification metrics."""

import numpy as np


def _binary_labels(labels):
    labels = np.asarray(labels).ravel()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError('labels must be 0 or 1')
    return labels.astype(bool)


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic over
    n_pos * n_neg, ties counted as 1/2 (Hanley & McNeil 1982).

    Raises ValueError when only one class is present or scores are not finite.
    """
    labels = _binary_labels(labels)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f'labels and scores differ in length: {labels.size} vs {scores.size}')
    if not np.isfinite(scores).all():
        raise ValueError('scores must be finite')
    pos, neg = scores[labels], np.sort(scores[~labels])
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f'ROC-AUC needs both classes; got {pos.size} positive, {neg.size} negative')
    below = np.searchsorted(neg, pos, side='left')
    ties = np.searchsorted(neg, pos, side='right') - below
    return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def classification_metrics(labels, probs, threshold=0.5) -> dict:
    """Accuracy, ROC-AUC, sensitivity and specificity of ``probs >= threshold``.

    ``labels`` are 0/1 and ``probs`` are P(positive).  Returns plain Python
    numbers with keys 'accuracy', 'roc_auc', 'sensitivity', 'specificity', 'n',
    'n_pos'.  'sensitivity' is None when there are no positives,
    'specificity' is None when there are no negatives, and 'roc_auc' is None
    when either class is absent (never NaN).
    """
    labels = _binary_labels(labels)
    probs = np.asarray(probs, dtype=np.float64).ravel()
    pred = probs >= threshold
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    both = n_pos > 0 and n_neg > 0
    return {
        'accuracy': float(np.mean(pred == labels)),
        'roc_auc': roc_auc(labels, probs) if both else None,
        'sensitivity': float(np.sum(pred & labels) / n_pos) if n_pos else None,
        'specificity': float(np.sum(~pred & ~labels) / n_neg) if n_neg else None,
        'n': int(labels.size),
        'n_pos': n_pos,
    }
