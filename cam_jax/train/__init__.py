"""Training: parameter sharding rules (``sharding``), the optimiser (``optim``), the sharded
train step (``step``), checkpoints (``checkpoints``), preemption (``preemption``), logs
(``observe``) and the resumable loop (``loop``)."""
