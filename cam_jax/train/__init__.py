"""Training: parameter sharding rules (``sharding``), the sharded train step (``step``) and the
loop over grain batches with validation and a checkpoint (``loop``)."""
