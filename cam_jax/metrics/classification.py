"""Host-side (numpy) binary classification metrics."""

from __future__ import annotations

import numpy as np

CLASSIFICATION_METRICS = ('accuracy', 'roc_auc', 'pr_auc', 'f1', 'sensitivity', 'specificity')


def binary_labels(labels) -> np.ndarray:
  """0/1 labels as a flat bool array; ValueError for any other value."""
  labels = np.asarray(labels).ravel()
  if not np.isin(labels, (0, 1)).all():
    raise ValueError('labels must be 0 or 1')
  return labels.astype(bool)


def _labels_and_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
  labels = binary_labels(labels)
  scores = np.asarray(scores, dtype=np.float64).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f'labels and scores differ in length: {labels.size} vs {scores.size}')
  if not np.isfinite(scores).all():
    raise ValueError('scores must be finite')
  return labels, scores


def roc_auc(labels, scores) -> float:
  """Area under the ROC curve as the Mann-Whitney U statistic over n_pos * n_neg, ties counted as
  1/2 (Hanley & McNeil, Radiology 1982).

  Raises ValueError when only one class is present or scores are not finite.
  """
  labels, scores = _labels_and_scores(labels, scores)
  pos, neg = scores[labels], np.sort(scores[~labels])
  if pos.size == 0 or neg.size == 0:
    raise ValueError(f'ROC-AUC needs both classes; got {pos.size} positive, {neg.size} negative')
  below = np.searchsorted(neg, pos, side='left')
  ties = np.searchsorted(neg, pos, side='right') - below
  return float((below.sum() + 0.5 * ties.sum()) / (pos.size * neg.size))


def pr_auc(labels, scores) -> float:
  """Area under the precision-recall curve as average precision, sum over thresholds of
  (R_k - R_{k-1}) * P_k, one threshold per distinct score so tied scores enter together (Zhu,
  "Recall, precision and average precision", U. Waterloo 2004; the definition of
  sklearn.metrics.average_precision_score, no interpolation).

  1.0 when every label is positive.  Raises ValueError when there is no positive or scores are
  not finite.
  """
  labels, scores = _labels_and_scores(labels, scores)
  n_pos = int(labels.sum())
  if n_pos == 0:
    raise ValueError('PR-AUC needs at least one positive label')
  order = np.argsort(-scores, kind='stable')
  scores, labels = scores[order], labels[order]
  last = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # end of each tie group
  tp = np.cumsum(labels)[last]
  precision = tp / (last + 1)
  recall_gain = np.diff(tp, prepend=0) / n_pos
  return float(np.sum(recall_gain * precision))


def f1(labels, probs, threshold=0.5) -> float:
  """F1 score, 2 TP / (2 TP + FP + FN), of the predictions ``probs >= threshold`` (van
  Rijsbergen, Information Retrieval, 1979).

  Raises ValueError when it is undefined: no positive label and no positive prediction.
  """
  labels, probs = _labels_and_scores(labels, probs)
  pred = probs >= threshold
  tp = int(np.sum(pred & labels))
  wrong = int(np.sum(pred != labels))
  if 2 * tp + wrong == 0:
    raise ValueError('F1 is undefined with no positive label and no positive prediction')
  return 2 * tp / (2 * tp + wrong)


def youden_threshold(labels, probs) -> float:
  """The threshold ``t`` (predict positive when ``p >= t``) maximising Youden's J = sensitivity +
  specificity - 1 (Youden, Cancer 1950), the smallest of ties; 0.5 when a class is absent."""
  labels, probs = _labels_and_scores(labels, probs)
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return 0.5
  order = np.argsort(-probs, kind='stable')
  probs, labels = probs[order], labels[order]
  last = np.flatnonzero(np.append(probs[1:] != probs[:-1], True))  # end of each tie group
  tp = np.cumsum(labels)[last]
  fp = (last + 1) - tp
  j = tp / n_pos - fp / n_neg
  best = np.flatnonzero(j == j.max())[-1]  # the lowest threshold among the best
  return float(probs[last[best]])


def _defined(fn, *args):
  try:
    return fn(*args)
  except ValueError:
    return None


def classification_metrics(labels, probs, threshold=0.5) -> dict:
  """Accuracy, ROC-AUC, PR-AUC, F1, sensitivity and specificity of ``probs >= threshold``.

  ``labels`` are 0/1 and ``probs`` are P(positive).  Returns plain Python numbers with keys
  'accuracy', 'roc_auc', 'pr_auc', 'f1', 'sensitivity', 'specificity', 'n', 'n_pos'.  An
  undefined value is None, never NaN: 'sensitivity' and 'pr_auc' with no positives,
  'specificity' with no negatives, 'roc_auc' when either class is absent, 'f1' with no positive
  label and no positive prediction.
  """
  labels, probs = _labels_and_scores(labels, probs)
  pred = probs >= threshold
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  return {
      'accuracy': float(np.mean(pred == labels)),
      'roc_auc': _defined(roc_auc, labels, probs),
      'pr_auc': _defined(pr_auc, labels, probs),
      'f1': _defined(f1, labels, probs, threshold),
      'sensitivity': float(np.sum(pred & labels) / n_pos) if n_pos else None,
      'specificity': float(np.sum(~pred & ~labels) / n_neg) if n_neg else None,
      'n': int(labels.size),
      'n_pos': n_pos,
  }
