"""Per-image records -> the numbers a paper reports: bootstrap CIs and paired tests
(``statistics``), summary tables (``summary``) and depth within and across families, over seeds
and images (``depth``)."""
